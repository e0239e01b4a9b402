/* bitnet_cuda.cu - the CUDA backend of bitnet.h (W2A8 kernels and the decode step).
   Compile with nvcc next to the C file that defines BITNET_IMPLEMENTATION and
   BITNET_CUDA.  See bitnet.h for how to build. */
#include "bitnet.h"
