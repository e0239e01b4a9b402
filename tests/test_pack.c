/* The GPU packing (bitnet.h, "Host-side packing for the GPU kernels"): round trips,
   the documented bit layout checked by an independent slow formula, the Q2_0 tile
   packer against the generic packer, and argument errors. */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void random_ternary(int8_t *w, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) w[i] = (int8_t)((int)(rnd() % 3) - 1);
}

/* The layout as the header documents it, one value at a time. */
static int documented_value(const uint8_t *packed, int k, int r, int col) {
    int c = col / 16, j = col % 16;
    size_t off = ((size_t)(r / 16) * (size_t)(k / 16) + (size_t)c) * 64 + (size_t)(r % 16 / 4 * 16 + r % 4 * 4);
    uint32_t word = (uint32_t)packed[off] | (uint32_t)packed[off + 1] << 8 | (uint32_t)packed[off + 2] << 16 |
                    (uint32_t)packed[off + 3] << 24;
    return (int)((word >> (2 * (4 * (j % 4) + j / 4))) & 3) - 1;
}

/* Q2_0 rows (d = 1) of an n x k ternary matrix, as the model file holds them. */
static uint8_t *to_q2(const int8_t *w, int n, int k) {
    uint8_t *q2 = (uint8_t *)calloc((size_t)n * (k / 64) * 18, 1);
    int r, c;
    for (r = 0; r < n; r++)
        for (c = 0; c < k; c++) {
            uint8_t *blk = q2 + ((size_t)r * (k / 64) + (size_t)(c / 64)) * 18;
            int j = c % 64;
            blk[0] = 0x00; blk[1] = 0x3c;
            blk[2 + j / 4] |= (uint8_t)((w[(size_t)r * k + c] + 1) << (2 * (j % 4)));
        }
    return q2;
}

static bitnet__qweight qweight(const uint8_t *q2, int rows, int cols) {
    bitnet__qweight w;
    w.q = q2; w.rows = rows; w.cols = cols; w.row_bytes = (size_t)cols / 64 * 18; w.scale = 1.0f;
    return w;
}

int main(void) {
    static const int shapes[][2] = {{16, 32}, {32, 64}, {48, 96}, {16, 2560}, {128, 160}, {2560, 64}, {80, 6912}};
    size_t s;

    TEST("packed size and argument checks") {
        int8_t w[16 * 32] = {0};
        uint8_t p[16 * 32 / 4];
        CHECK(bitnet_gpu_packed_size(16, 32) == 128);
        CHECK(bitnet_gpu_packed_size(2560, 6912) == (size_t)2560 * 6912 / 4);
        CHECK(bitnet_gpu_packed_size(8, 32) == 0);
        CHECK(bitnet_gpu_packed_size(16, 48) == 0);
        CHECK(bitnet_gpu_packed_size(0, 32) == 0);
        CHECK(bitnet_gpu_packed_size(-16, 32) == 0);
        CHECK(bitnet_gpu_pack(w, 8, 32, p) == BITNET_E_ARG);
        CHECK(bitnet_gpu_pack(w, 16, 40, p) == BITNET_E_ARG);
        CHECK(bitnet_gpu_pack(NULL, 16, 32, p) == BITNET_E_ARG);
        CHECK(bitnet_gpu_pack(w, 16, 32, NULL) == BITNET_E_ARG);
        CHECK(bitnet_gpu_unpack(p, 16, 33, w) == BITNET_E_ARG);
        w[37] = 2;
        CHECK(bitnet_gpu_pack(w, 16, 32, p) == BITNET_E_ARG);
        w[37] = -2;
        CHECK(bitnet_gpu_pack(w, 16, 32, p) == BITNET_E_ARG);
        w[37] = 1;
        CHECK(bitnet_gpu_pack(w, 16, 32, p) == BITNET_OK);
    }

    TEST("round trip and documented layout on random matrices") {
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int n = shapes[s][0], k = shapes[s][1], r, c, bad = 0;
            size_t nk = (size_t)n * (size_t)k;
            int8_t *w = (int8_t *)malloc(nk), *back = (int8_t *)malloc(nk);
            uint8_t *p = (uint8_t *)malloc(nk / 4);
            random_ternary(w, nk);
            memset(p, 0xA5, nk / 4);
            memset(back, 0x55, nk);
            CHECK(bitnet_gpu_pack(w, n, k, p) == BITNET_OK);
            CHECK(bitnet_gpu_unpack(p, n, k, back) == BITNET_OK);
            CHECKF(memcmp(w, back, nk) == 0, "%dx%d: unpack(pack(w)) != w", n, k);
            for (r = 0; r < n && !bad; r++)
                for (c = 0; c < k; c++)
                    if (documented_value(p, k, r, c) != w[(size_t)r * (size_t)k + (size_t)c]) {
                        CHECKF(0, "%dx%d: value (%d, %d) is not where the header says", n, k, r, c);
                        bad = 1;
                        break;
                    }
            free(w); free(back); free(p);
        }
    }

    TEST("dp4a view: (word >> 2s) & 0x03030303 gives values 4s..4s+3 plus one") {
        int8_t w[16 * 32];
        uint8_t p[16 * 32 / 4];
        int s4, b;
        random_ternary(w, sizeof w);
        CHECK(bitnet_gpu_pack(w, 16, 32, p) == BITNET_OK);
        /* row 5, chunk 1: columns 16..31 */
        {
            size_t off = (size_t)(1 * 64 + 5 / 4 * 16 + 5 % 4 * 4);
            uint32_t word = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
            for (s4 = 0; s4 < 4; s4++) {
                uint32_t q = (word >> (2 * s4)) & 0x03030303u;
                for (b = 0; b < 4; b++) CHECK((int)((q >> (8 * b)) & 0xff) - 1 == w[5 * 32 + 16 + 4 * s4 + b]);
            }
        }
    }

    TEST("Q2_0 tile packer matches the generic packer") {
        int n = 48, k = 192, r, c;
        int8_t *w = (int8_t *)malloc((size_t)n * k);
        uint8_t *q2 = (uint8_t *)malloc((size_t)n * (k / 64) * 18), *p = (uint8_t *)malloc((size_t)n * k / 4);
        uint8_t *p2 = (uint8_t *)malloc((size_t)n * k / 4);
        random_ternary(w, (size_t)n * k);
        memset(q2, 0, (size_t)n * (k / 64) * 18);
        for (r = 0; r < n; r++)
            for (c = 0; c < k; c++) {
                uint8_t *blk = q2 + ((size_t)r * (k / 64) + (size_t)(c / 64)) * 18;
                int j = c % 64;
                blk[0] = 0x00; blk[1] = 0x3c; /* d = 1.0 in f16 */
                blk[2 + j / 4] |= (uint8_t)((w[(size_t)r * k + c] + 1) << (2 * (j % 4)));
            }
        CHECK(bitnet_gpu_pack(w, n, k, p) == BITNET_OK);
        memset(p2, 0xA5, (size_t)n * k / 4);
        for (r = 0; r < n; r += 16) {
            const uint8_t *rows[16];
            int i;
            for (i = 0; i < 16; i++) rows[i] = q2 + (size_t)(r + i) * (k / 64) * 18;
            bitnet__gpu_pack_tile_q2(p2 + (size_t)r * k / 4, rows, k);
        }
        CHECK(memcmp(p, p2, (size_t)n * k / 4) == 0);
        free(w); free(q2); free(p); free(p2);
    }
    TEST("fused Q/K/V and gate/up row orders") {
        /* 4 q heads, 2 kv heads of 32 dims; k = 128; FFN 48 */
        bitnet_hparams hp;
        bitnet__layer L;
        const int hd = 32, nh = 4, nkv = 2, k = 128, nff = 48, n = (nh + 2 * nkv) * hd;
        int8_t *wq = (int8_t *)malloc((size_t)nh * hd * k), *wk = (int8_t *)malloc((size_t)nkv * hd * k);
        int8_t *wv = (int8_t *)malloc((size_t)nkv * hd * k), *g = (int8_t *)malloc((size_t)nff * k), *u = (int8_t *)malloc((size_t)nff * k);
        int8_t *back = (int8_t *)malloc((size_t)n * k);
        uint8_t *q2[5], *packed = (uint8_t *)malloc((size_t)n * k / 4);
        int f, bad = 0;
        memset(&hp, 0, sizeof hp);
        hp.n_embd = k; hp.n_head = nh; hp.n_head_kv = nkv; hp.head_dim = hd;
        random_ternary(wq, (size_t)nh * hd * k); random_ternary(wk, (size_t)nkv * hd * k); random_ternary(wv, (size_t)nkv * hd * k);
        random_ternary(g, (size_t)nff * k); random_ternary(u, (size_t)nff * k);
        q2[0] = to_q2(wq, nh * hd, k); q2[1] = to_q2(wk, nkv * hd, k); q2[2] = to_q2(wv, nkv * hd, k);
        q2[3] = to_q2(g, nff, k); q2[4] = to_q2(u, nff, k);
        memset(&L, 0, sizeof L);
        L.wq = qweight(q2[0], nh * hd, k); L.wk = qweight(q2[1], nkv * hd, k); L.wv = qweight(q2[2], nkv * hd, k);
        L.gate = qweight(q2[3], nff, k); L.up = qweight(q2[4], nff, k);
        memset(packed, 0xA5, (size_t)n * k / 4);
        bitnet__gpu_pack_qkv(&hp, &L, packed);
        CHECK(bitnet_gpu_unpack(packed, n, k, back) == BITNET_OK);
        for (f = 0; f < n; f++) {
            /* as documented: fused row f is dim d of head `head` */
            int tile = f / 16, lr = f % 16, head = tile / (hd / 16), j = tile % (hd / 16);
            int d = lr < 8 ? 8 * j + lr : hd / 2 + 8 * j + lr - 8;
            const int8_t *want = head < nh ? wq + (size_t)(head * hd + d) * k
                               : head < nh + nkv ? wk + (size_t)((head - nh) * hd + d) * k
                                                 : wv + (size_t)((head - nh - nkv) * hd + d) * k;
            bad += memcmp(back + (size_t)f * k, want, (size_t)k) != 0;
        }
        CHECKF(bad == 0, "Q/K/V: %d fused rows are not the documented ones", bad);
        memset(packed, 0xA5, (size_t)2 * nff * k / 4);
        bitnet__gpu_pack_gate_up(&L, packed);
        CHECK(bitnet_gpu_unpack(packed, 2 * nff, k, back) == BITNET_OK);
        bad = 0;
        for (f = 0; f < 2 * nff; f++) {
            int tile = f / 16, lr = f % 16;
            const int8_t *want = lr < 8 ? g + (size_t)(8 * tile + lr) * k : u + (size_t)(8 * tile + lr - 8) * k;
            bad += memcmp(back + (size_t)f * k, want, (size_t)k) != 0;
        }
        CHECKF(bad == 0, "gate/up: %d fused rows are not the documented ones", bad);
        memset(packed, 0xA5, (size_t)nff * k / 4);
        bitnet__gpu_pack_matrix(&L.gate, packed);
        CHECK(bitnet_gpu_unpack(packed, nff, k, back) == BITNET_OK);
        CHECK(memcmp(back, g, (size_t)nff * k) == 0);
        for (f = 0; f < 5; f++) free(q2[f]);
        free(wq); free(wk); free(wv); free(g); free(u); free(back); free(packed);
    }
    return TEST_EXIT();
}
