// Paged decode instances for a fp16 KV cache (kernels and their contract: paged_decode.cuh).
#include "attention/paged_decode.cuh"

RB_PAGED_DECODE_16BIT_CACHE(fp16, __half, bf16, __nv_bfloat16)
