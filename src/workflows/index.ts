export { onboardServer } from './onboard';
