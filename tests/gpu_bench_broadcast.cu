/* Every block needs the same vector: how fast can all of them get it?

   The fused step (bitnet_cuda.cu) starts every GEMV phase with each of its 132
   blocks reading the whole input vector (2560 or 6912 floats) from L2 at once, and
   tests/gpu_bench_norm.cu shows that this costs 2-3x more than one block alone.
   This benchmark times three ways for all blocks of a grid (one block per SM) to
   hold the vector in shared memory, started together after a grid-wide spin:
     l2        every block loads the whole vector (ld.global.cg, 16 bytes a thread);
     dsmem C   clusters of C blocks: each block loads 1/C of it, then copies the other
               slices from its peers' shared memory (distributed shared memory);
     tma C     clusters of C blocks: each block issues one bulk copy of its slice,
               multicast to the shared memory of every block of the cluster.
   Prints cycles (median over runs of the slowest block) and checks that every block
   holds the vector.  Also reports whether a cooperative launch accepts a cluster
   dimension (what the fused step would need).
   usage: gpu_bench_broadcast */
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gpu_check.h"

/* Clusters (compute capability 9.0; the kernels do nothing of it elsewhere and
   main skips them): sync with release / acquire, this block's rank and the
   cluster's size, and a 16-byte load from a peer's shared memory. */
__device__ __forceinline__ void cluster_sync(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ int cluster_rank(void) {
    unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return (int)r;
}
__device__ __forceinline__ int cluster_size(void) {
    unsigned c = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(c));
#endif
    return (int)c;
}
__device__ __forceinline__ float4 peer_load4(const float *local, int rank) {
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"((unsigned)__cvta_generic_to_shared(local)), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(remote) : "memory");
#else
    (void)local;
    (void)rank;
#endif
    return v;
}

enum { WAY_L2 = 0, WAY_DSMEM = 1, WAY_TMA = 2 };

struct bench_args {
    const float *x;
    int n;                      /* a multiple of 4 * cluster size */
    unsigned *arrive;           /* the starting spin: zero before the launch */
    long long *cycles;          /* per block */
    int *bad;                   /* per block: elements that differ */
};

/* All blocks leave together (they are all resident: one per SM). */
__device__ void start_together(unsigned *arrive) {
    __syncthreads();
    if (threadIdx.x == 0) {
        atomicAdd(arrive, 1u);
        while (*(volatile unsigned *)arrive < gridDim.x) {
        }
    }
    __syncthreads();
}

template <int WAY>
__global__ void __launch_bounds__(256, 1) broadcast_kernel(const bench_args a) {
    extern __shared__ __align__(16) float vec[];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ __align__(8) unsigned long long bar;
#endif
    const int tid = threadIdx.x, T = blockDim.x, n = a.n;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (WAY == WAY_TMA && tid == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"((unsigned)__cvta_generic_to_shared(&bar)) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
#endif
    if (WAY != WAY_L2) cluster_sync();   /* (peers' barriers initialized before any copy signals them) */
    start_together(a.arrive);
    const long long t0 = clock64();
    if (WAY == WAY_L2) {
        for (int i = tid * 4; i < n; i += T * 4) *(float4 *)(vec + i) = __ldcg((const float4 *)(a.x + i));
        __syncthreads();
    } else if (WAY == WAY_DSMEM) {
        const int C = cluster_size(), r = cluster_rank(), slice = n / C;
        for (int i = r * slice + tid * 4; i < (r + 1) * slice; i += T * 4) *(float4 *)(vec + i) = __ldcg((const float4 *)(a.x + i));
        cluster_sync();
        for (int p = 1; p < C; p++) {
            const int q = (r + p) % C;
            for (int i = q * slice + tid * 4; i < (q + 1) * slice; i += T * 4) *(float4 *)(vec + i) = peer_load4(vec + i, q);
        }
        __syncthreads();
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        const int C = cluster_size(), r = cluster_rank(), slice = n / C;
        const unsigned b = (unsigned)__cvta_generic_to_shared(&bar);
        if (tid == 0) {
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"((unsigned)n * 4) : "memory");
            const unsigned short mask = (unsigned short)((1u << C) - 1);
            asm volatile(
                "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, [%3], %4;" ::"r"(
                    (unsigned)__cvta_generic_to_shared(vec + r * slice)),
                "l"(a.x + r * slice), "r"((unsigned)slice * 4), "r"(b), "h"(mask)
                : "memory");
        }
        unsigned done = 0;
        while (!done)
            asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                         : "=r"(done)
                         : "r"(b)
                         : "memory");
        __syncthreads();
#endif
    }
    const long long t1 = clock64();
    int bad = 0;
    for (int i = tid; i < n; i += T) bad += vec[i] != __ldcg(a.x + i);
    bad = __syncthreads_count(bad != 0);
    if (tid == 0) {
        a.cycles[blockIdx.x] = t1 - t0;
        a.bad[blockIdx.x] = bad;
    }
    if (WAY != WAY_L2) cluster_sync();   /* no block leaves while a peer may still read its shared memory */
}

__global__ void trivial_kernel(int *out) {
    if (threadIdx.x == 0 && blockIdx.x == 0) *out = 1;
}

/* One configuration: median over runs of the slowest block's cycles; -1 if it
   cannot run (the message says why). */
static long long run_way(int way, int cluster, const float *x, int n, int blocks, size_t smem, unsigned *arrive, long long *cycles,
                         int *bad, const char **why) {
    void (*kernel)(const bench_args) = way == WAY_L2 ? broadcast_kernel<WAY_L2> : way == WAY_DSMEM ? broadcast_kernel<WAY_DSMEM>
                                                                                                    : broadcast_kernel<WAY_TMA>;
    CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    if (cluster > 1) CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1] = {};
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3(256);
    cfg.dynamicSmemBytes = smem;
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)cluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cluster > 1) {
        int max_clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&max_clusters, kernel, &cfg) != cudaSuccess) {
            (void)cudaGetLastError();
            *why = "cudaOccupancyMaxActiveClusters failed";
            return -1;
        }
        if (max_clusters * cluster < blocks) {
            static char msg[96];
            snprintf(msg, sizeof msg, "only %d clusters (%d blocks) resident at once", max_clusters, max_clusters * cluster);
            *why = msg;
            return -1;
        }
    }
    bench_args a = {x, n, arrive, cycles, bad};
    std::vector<long long> worst;
    for (int r = 0; r < 21; r++) {
        CK(cudaMemset(arrive, 0, sizeof(unsigned)));
        CK(cudaMemset(bad, 0xff, blocks * sizeof(int)));
        CK(cudaLaunchKernelEx(&cfg, kernel, a));
        CK(cudaDeviceSynchronize());
        std::vector<long long> c(blocks);
        std::vector<int> b(blocks);
        CK(cudaMemcpy(c.data(), cycles, blocks * sizeof(long long), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(b.data(), bad, blocks * sizeof(int), cudaMemcpyDeviceToHost));
        for (int i = 0; i < blocks; i++)
            if (b[i] != 0) {
                *why = "WRONG: a block's copy of the vector differs";
                return -1;
            }
        worst.push_back(*std::max_element(c.begin(), c.end()));
    }
    std::sort(worst.begin(), worst.end());
    return worst[10];
}

int main(void) {
    gpu_hopper g;
    if (!gpu_hopper_or_skip("gpu_bench_broadcast", "clusters", &g)) return 0;
    const int n_sm = g.n_sm;
    printf("# every block gets the same vector: %s, %d SMs, SM clock up to %.0f MHz\n\n", g.prop.name, n_sm, g.clock_khz / 1000.0);
    {
        /* does a cooperative launch take a cluster dimension? */
        int *out;
        CK(cudaMalloc(&out, sizeof(int)));
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[2] = {};
        cfg.gridDim = dim3((unsigned)n_sm);
        cfg.blockDim = dim3(256);
        attr[0].id = cudaLaunchAttributeCooperative;
        attr[0].val.cooperative = 1;
        attr[1].id = cudaLaunchAttributeClusterDimension;
        attr[1].val.clusterDim.x = 2;
        attr[1].val.clusterDim.y = 1;
        attr[1].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 2;
        cudaError_t e = n_sm % 2 ? cudaErrorInvalidValue : cudaLaunchKernelEx(&cfg, trivial_kernel, out);
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        printf("cooperative launch with clusters of 2: %s\n\n", e == cudaSuccess ? "accepted" : cudaGetErrorString(e));
        (void)cudaGetLastError();
        CK(cudaFree(out));
    }
    const int blocks = n_sm;
    const size_t smem = 160 * 1024;   /* about what a fused-step block holds: one block per SM */
    float *x;
    unsigned *arrive;
    long long *cycles;
    int *bad;
    CK(cudaMalloc(&x, 6912 * sizeof(float)));
    CK(cudaMalloc(&arrive, sizeof(unsigned)));
    CK(cudaMalloc(&cycles, blocks * sizeof(long long)));
    CK(cudaMalloc(&bad, blocks * sizeof(int)));
    {
        std::vector<float> h(6912);
        for (int i = 0; i < 6912; i++) h[i] = (float)i * 0.25f - 100.0f;
        CK(cudaMemcpy(x, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    }
    printf("| way | cluster | n | cycles (slowest block, median of 21) |\n|---|---:|---:|---:|\n");
    static const char *names[3] = {"l2", "dsmem", "tma multicast"};
    for (int n : {2560, 6912})
        for (int way = 0; way < 3; way++)
            for (int cluster : {1, 2, 4, 6}) {
                if ((way == WAY_L2) != (cluster == 1) || blocks % cluster || n % (4 * cluster)) continue;
                const char *why = "";
                const long long c = run_way(way, cluster, x, n, blocks, smem, arrive, cycles, bad, &why);
                if (c < 0) printf("| %s | %d | %d | %s |\n", names[way], cluster, n, why);
                else printf("| %s | %d | %d | %lld |\n", names[way], cluster, n, c);
            }
    CK(cudaFree(x));
    CK(cudaFree(arrive));
    CK(cudaFree(cycles));
    CK(cudaFree(bad));
    return 0;
}
