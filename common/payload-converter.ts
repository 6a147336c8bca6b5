// Temporal PayloadConverter that encodes every value with msgpackr: smaller than JSON, keeps typed arrays
// (per-token entropies) intact, and runs inside the workflow sandbox. Referenced by path from every worker
// and client (`dataConverter.payloadConverterPath`), as the SDK requires.
import {
  BinaryPayloadConverter,
  CompositePayloadConverter,
  type Payload,
  type PayloadConverterWithEncoding,
  UndefinedPayloadConverter,
} from '@temporalio/common';
import { decode, encode } from '@temporalio/common/lib/encoding.js';
import { packValue, unpackValue } from './msgpack.js';

export const MSGPACK_ENCODING = 'binary/msgpack';

export class MsgpackPayloadConverter implements PayloadConverterWithEncoding {
  readonly encodingType = MSGPACK_ENCODING;

  toPayload(value: unknown): Payload | undefined {
    if (value === undefined) return undefined;
    return { metadata: { encoding: encode(MSGPACK_ENCODING) }, data: packValue(value) };
  }

  fromPayload<T>(payload: Payload): T {
    const encoding = payload.metadata?.encoding ? decode(payload.metadata.encoding) : '(none)';
    if (encoding !== MSGPACK_ENCODING) {
      throw new TypeError(`msgpack payload converter cannot decode encoding '${encoding}'`);
    }
    return unpackValue<T>(payload.data ?? new Uint8Array());
  }
}

export const payloadConverter = new CompositePayloadConverter(
  new UndefinedPayloadConverter(),
  new BinaryPayloadConverter(),
  new MsgpackPayloadConverter(),
);
