package topology

// EncodingHeader marks a raw batch whose payload is compressed; its value
// names the codec. A message without it is a plain RawBatch encoding (what
// releases before compression published), so either reads.
const EncodingHeader = "Logtally-Encoding"

// EncodingS2 is S2 block compression (github.com/klauspost/compress/s2).
// Log lines compress about 5×, which takes that much work off JetStream:
// every raw byte is written, cached, copied to a consumer and read again.
const EncodingS2 = "s2"
