// Typed access to the shared msgpack configuration (defined once, in msgpack.cjs).
export { packValue, unpackValue } from './msgpack.cjs';
