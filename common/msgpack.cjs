// One msgpackr configuration for every binary encoding in Muse (NATS wire and Temporal payloads), so a value
// encoded anywhere decodes the same everywhere. CommonJS because Temporal loads the payload converter with
// require() (clients and workers) and bundles it into the workflow sandbox, where msgpackr is pure JS.
'use strict';
const { Packr } = require('msgpackr');

// Records (shared structures) are off: encoder and decoder live in different processes that share no
// structure table. Typed arrays (per-token entropies) round-trip as their own types.
const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'number', mapsAsObjects: true });

exports.packValue = (value) => packr.pack(value);
exports.unpackValue = (bytes) => packr.unpack(bytes);
