import type { CompositePayloadConverter, Payload, PayloadConverterWithEncoding } from '@temporalio/common';
export declare const MSGPACK_ENCODING = 'binary/msgpack';
export declare class MsgpackPayloadConverter implements PayloadConverterWithEncoding {
  readonly encodingType: string;
  toPayload(value: unknown): Payload | undefined;
  fromPayload<T>(payload: Payload): T;
}
export declare const payloadConverter: CompositePayloadConverter;
