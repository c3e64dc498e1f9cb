#include <cblas.h>
/* OpenBLAS extensions (declared in Debian's cblas.h for the openblas-pthread flavour). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
