// wasi:cli/stdout and stderr for the tests: Node has its own console, so these are unused.
const stream = { blockingWriteAndFlush() {}, [Symbol.dispose]() {} };
export const getStdout = () => stream;
export const getStderr = () => stream;
