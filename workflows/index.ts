// Workflow entry module for the worker bundle: every workflow type Muse registers.
export { parallelMuse } from './parallel-muse.js';
export { progressQuery, trajectory } from './trajectory.js';
