// One msgpackr configuration for every binary encoding in Muse (NATS wire and Temporal payloads),
// so a value encoded anywhere decodes the same everywhere. Workflow-safe: msgpackr is pure JS here.
import { Packr } from 'msgpackr';

// Records (shared structures) are off: encoder and decoder live in different processes that share no
// structure table. Typed arrays (per-token entropies) round-trip as their own types.
const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'number', mapsAsObjects: true });

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function unpackValue<T = unknown>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}
