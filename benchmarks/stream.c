/* A STREAM-style bandwidth program, for side-by-side checks of memory.stream.
 *
 * Usage: stream OP ELEMENTS NTIMES     (OP: copy | scale | add | triad)
 * Counts bytes as STREAM does (copy/scale 2 words, add/triad 3 words, no write-allocate),
 * times each of NTIMES passes with omp_get_wtime, skips the first pass as STREAM does, and
 * prints "OP best_GBs avg_GBs" (1 GB = 1e9 B) after checking every output element.
 * Build: gcc -O3 -march=native -fopenmp stream.c -o stream
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s copy|scale|add|triad ELEMENTS NTIMES\n", argv[0]);
        return 2;
    }
    const char *op = argv[1];
    const long n = atol(argv[2]);
    const int ntimes = atoi(argv[3]);
    const double s = 3.0;
    int kind = !strcmp(op, "copy") ? 0 : !strcmp(op, "scale") ? 1 : !strcmp(op, "add") ? 2
             : !strcmp(op, "triad") ? 3 : -1;
    if (kind < 0 || n < 1 || ntimes < 2) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    double *a = aligned_alloc(64, n * sizeof(double));
    double *b = aligned_alloc(64, n * sizeof(double));
    double *c = aligned_alloc(64, n * sizeof(double));
    if (!a || !b || !c) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
#pragma omp parallel for
    for (long j = 0; j < n; j++) {  /* first touch by the threads that will use the pages */
        a[j] = 1.0 + (double)(j % 1000) / 1000.0;
        b[j] = 2.0 + (double)(j % 777) / 777.0;
        c[j] = 0.5 + (double)(j % 555) / 555.0;
    }
    double best = 1e30, total = 0.0;
    for (int k = 0; k < ntimes; k++) {
        double t = omp_get_wtime();
        switch (kind) {
        case 0:
#pragma omp parallel for
            for (long j = 0; j < n; j++) c[j] = a[j];
            break;
        case 1:
#pragma omp parallel for
            for (long j = 0; j < n; j++) b[j] = s * c[j];
            break;
        case 2:
#pragma omp parallel for
            for (long j = 0; j < n; j++) c[j] = a[j] + b[j];
            break;
        default:
#pragma omp parallel for
            for (long j = 0; j < n; j++) a[j] = b[j] + s * c[j];
            break;
        }
        t = omp_get_wtime() - t;
        if (k > 0) {  /* the first pass is excluded, as in STREAM */
            total += t;
            if (t < best) best = t;
        }
    }
    long wrong = 0;
    for (long j = 0; j < n; j++) {
        double want = kind == 0 ? a[j] : kind == 1 ? s * c[j] : kind == 2 ? a[j] + b[j]
                    : b[j] + s * c[j];
        double got = kind == 0 ? c[j] : kind == 1 ? b[j] : kind == 2 ? c[j] : a[j];
        if (fabs(got - want) > 1e-12 * fabs(want)) wrong++;
    }
    if (wrong) {
        fprintf(stderr, "%ld wrong elements\n", wrong);
        return 1;
    }
    double bytes = (kind < 2 ? 2.0 : 3.0) * sizeof(double) * (double)n;
    printf("%s %.4f %.4f\n", op, bytes / best / 1e9, bytes / (total / (ntimes - 1)) / 1e9);
    return 0;
}
