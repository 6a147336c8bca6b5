// Workflow entry module for the worker bundle: every workflow type Muse registers.
export { trajectory, progressQuery } from './trajectory.js';
