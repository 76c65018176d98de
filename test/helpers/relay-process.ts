export { RelayProcess, CLI, type LogLine } from '../../src/demo/relay-process.js';
