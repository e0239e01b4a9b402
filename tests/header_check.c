/* Compiled by `make check-headers` in every configuration, as C and as C++. */
#define BITNET_IMPLEMENTATION
#include "bitnet.h"
#include "bitnet.h" /* a second inclusion must be harmless */

int main(void) {
    bitnet_model_params mp = bitnet_model_default_params();
    (void)mp;
    return 0;
}
