// Paged decode instances for a e4m3 KV cache (kernels and their contract: paged_decode.cuh).
#include "attention/paged_decode.cuh"

RB_PAGED_DECODE_FP8_CACHE(e4m3, false)
