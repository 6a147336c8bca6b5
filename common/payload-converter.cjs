// Temporal PayloadConverter that encodes every value with msgpack: smaller than JSON, keeps typed arrays
// (per-token entropies) intact, and runs inside the workflow sandbox. Referenced by path from every worker
// and client (`dataConverter.payloadConverterPath`), as the SDK requires; CommonJS so that require() loads it
// in any runtime.
'use strict';
const {
  BinaryPayloadConverter,
  CompositePayloadConverter,
  JsonPayloadConverter,
  UndefinedPayloadConverter,
} = require('@temporalio/common');
const { packValue, unpackValue } = require('./msgpack.cjs');

const MSGPACK_ENCODING = 'binary/msgpack';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

class MsgpackPayloadConverter {
  constructor() {
    this.encodingType = MSGPACK_ENCODING;
  }
  toPayload(value) {
    if (value === undefined) return undefined;
    return { metadata: { encoding: encoder.encode(MSGPACK_ENCODING) }, data: packValue(value) };
  }
  fromPayload(payload) {
    const encoding = payload.metadata?.encoding ? decoder.decode(payload.metadata.encoding) : '(none)';
    if (encoding !== MSGPACK_ENCODING)
      throw new TypeError(`msgpack payload converter cannot decode encoding '${encoding}'`);
    return unpackValue(payload.data || new Uint8Array());
  }
}

exports.MSGPACK_ENCODING = MSGPACK_ENCODING;
exports.MsgpackPayloadConverter = MsgpackPayloadConverter;
// JSON last: msgpack encodes every value before it is reached, so it only decodes, for inputs other tools send
// (`temporal workflow start --input`, the Web UI, another SDK): without it their workflow tasks fail on every retry.
exports.payloadConverter = new CompositePayloadConverter(
  new UndefinedPayloadConverter(),
  new BinaryPayloadConverter(),
  new MsgpackPayloadConverter(),
  new JsonPayloadConverter(),
);
