export { onboardServer } from './onboard';
export { driftCheck, driftSweep } from './drift';
export { rollbackServer } from './rollback';
export { onboardFleet } from './fleet';
export { healthSweep } from './health';
