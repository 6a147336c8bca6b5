export declare function packValue(value: unknown): Uint8Array;
export declare function unpackValue<T = unknown>(bytes: Uint8Array): T;
