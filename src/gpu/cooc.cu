// cooc's CUDA kernels: the integer co-occurrence counts of a tile of item rows, and their
// compaction into (item, count) candidates. Compiled at run time by NVRTC (src/gpu/mod.rs).
//
// Layout (the CPU kernel's, uploaded once):
//   packed  every basket as [len, item, item, ...], back to back
//   offs    per item row, the range of `pos` holding its baskets (n_items + 1 entries)
//   pos     the position in `packed` of each basket of each row, row after row
// A tile is rows [r0, r0 + rows) with a dense counts[rows][n_items] block of u32; each
// tile's counts are zeroed again by `compact_tile` as it reads them.

typedef unsigned int u32;
typedef unsigned long long u64;

// One thread per (row, basket) entry of the tile: adds the basket's items to the row.
extern "C" __global__ void count_tile(const u32* __restrict__ packed,
                                      const u64* __restrict__ offs,  // offs + r0
                                      const u32* __restrict__ pos,
                                      u32 rows, u64 n_items, u32* __restrict__ counts) {
    const u64 e0 = offs[0];
    const u64 n = offs[rows] - e0;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += stride) {
        // The row holding entry e: the last r with offs[r] <= e0 + e (empty rows skipped).
        u32 lo = 0, hi = rows;
        while (hi - lo > 1) {
            const u32 mid = lo + (hi - lo) / 2;
            if (offs[mid] <= e0 + e) lo = mid; else hi = mid;
        }
        const u32 p = pos[e0 + e];
        const u32 len = packed[p];
        u32* row = counts + (u64)lo * n_items;
        for (u32 t = 1; t <= len; ++t) atomicAdd(&row[packed[p + t]], 1u);
    }
}

// Block-wide sum of one value per thread; blockDim.x is a multiple of 32, at most 1024.
__device__ u32 block_sum(u32 v) {
    __shared__ u32 warp_sums[32];
    for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(0xffffffffu, v, d);
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    u32 total = 0;
    if (threadIdx.x == 0)
        for (u32 w = 0; w < (blockDim.x + 31) / 32; ++w) total += warp_sums[w];
    return total;  // valid in thread 0
}

// One block per row: how many candidates (count > 0, not the row's own item) it has.
extern "C" __global__ void nonzeros_tile(const u32* __restrict__ counts, u32 r0, u64 n_items,
                                         u32* __restrict__ nnz) {
    const u32 r = blockIdx.x;
    const u32* row = counts + (u64)r * n_items;
    u32 mine = 0;
    for (u64 j = threadIdx.x; j < n_items; j += blockDim.x)
        mine += (row[j] != 0 && j != (u64)(r0 + r));
    const u32 total = block_sum(mine);
    if (threadIdx.x == 0) nnz[r] = total;
}

// One block per row: writes its candidates at start[r].. (in no particular order: the host
// selection does not depend on it) and zeroes the row for the next tile.
extern "C" __global__ void compact_tile(u32* __restrict__ counts, u32 r0, u64 n_items,
                                        const u64* __restrict__ start,
                                        u32* __restrict__ cursor,
                                        u32* __restrict__ out_item,
                                        u32* __restrict__ out_count) {
    const u32 r = blockIdx.x;
    u32* row = counts + (u64)r * n_items;
    for (u64 j = threadIdx.x; j < n_items; j += blockDim.x) {
        const u32 c = row[j];
        if (c == 0) continue;
        row[j] = 0;
        if (j == (u64)(r0 + r)) continue;
        const u64 at = start[r] + atomicAdd(&cursor[r], 1u);
        out_item[at] = (u32)j;
        out_count[at] = c;
    }
}
