/**
 * Data-parallel training across processes, GPUs and machines on MPI (and NCCL for GPU ranks): the communicator, the
 * gradient reducer that overlaps averaging with backward, and the check that every rank runs the same settings.
 */
export { Communicator, activeCommunicator, launcher, mpiStatus, ncclStatus, type DistributedMode, type DistributedOptions, type Launcher } from './comm.js';
export { GradReducer, type GradReducerOptions, type ReduceStats } from './reducer.js';
export { AgreedError, checkSameSettings, datasetFingerprint } from './check.js';
