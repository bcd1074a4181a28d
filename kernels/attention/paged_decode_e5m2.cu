// Paged decode instances for a e5m2 KV cache (kernels and their contract: paged_decode.cuh).
#include "attention/paged_decode.cuh"

RB_PAGED_DECODE_FP8_CACHE(e5m2, true)
