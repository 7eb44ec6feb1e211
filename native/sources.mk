# The native core's sources and compiler flags: the one list that both
# native/Makefile (`include`) and the Python build
# (edge_sdk/backends/native/build.py, at pip install or first use) read.
#
# Only blank lines, comments and `NAME := words` lines: the Python reader
# accepts nothing else (no other make syntax, no $(...), no continuations).
#
#   CORE_SOURCES            every architecture, files under src/ without .c
#   ARCH_SOURCES_<arch>     x86_64, aarch64, armv7 or none (no SIMD kernels)
#   BASE_FLAGS_<arch>       every file of that architecture
#   FLAGS_<file>            one SIMD file's own flags (<file>: its name without
#                           directory and .c, naming one source), so the library
#                           runs on any CPU of the arch and picks kernels at run time
#   OPT_FLAGS               optimization (the Makefile's default CFLAGS)
#   COMMON_FLAGS            every file: -ffp-contract=off, no FMA may change a rounding
#   LINK_LIBS               the shared library's link libraries

CORE_SOURCES := status dispatch kernels_generic pool ctx validate buffers products api_kernels layer graphs

ARCH_SOURCES_x86_64 := arch/x86/cpu arch/x86/avx2 arch/x86/avx512vnni
ARCH_SOURCES_aarch64 := arch/arm/cpu_aarch64 arch/arm/neon arch/arm/dotprod arch/arm/i8mm
ARCH_SOURCES_armv7 := arch/arm/cpu_armv7 arch/arm/neon32
ARCH_SOURCES_none := arch/none/cpu

BASE_FLAGS_armv7 := -march=armv7-a -mfpu=vfpv3-d16 -mfloat-abi=hard

FLAGS_avx2 := -mavx2 -mfma -mf16c
FLAGS_avx512vnni := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni
FLAGS_dotprod := -march=armv8.2-a+dotprod
FLAGS_i8mm := -march=armv8.2-a+dotprod+i8mm
FLAGS_neon32 := -mfpu=neon-vfpv4

OPT_FLAGS := -O3
COMMON_FLAGS := -std=c11 -fPIC -ffp-contract=off -fno-math-errno -Wall -Wextra -D_GNU_SOURCE
LINK_LIBS := -lpthread -lm
