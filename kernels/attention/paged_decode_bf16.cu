// Paged decode instances for a bf16 KV cache (kernels and their contract: paged_decode.cuh).
#include "attention/paged_decode.cuh"

RB_PAGED_DECODE_16BIT_CACHE(bf16, __nv_bfloat16, fp16, __half)

// The split merge, once per query type.
RB_PAGED_DECODE_MERGE(bf16, __nv_bfloat16)
RB_PAGED_DECODE_MERGE(fp16, __half)
