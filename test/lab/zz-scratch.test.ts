import { labSpec } from '../helpers/lab';
import { describePackageFaults } from './package-faults';
describePackageFaults(() => labSpec('server1'));
