/*
 * A non-Rust module: C with wasi-libc, built by scripts/build-guests.sh with clang's
 * wasm32-wasi target. Writes the input file as `hexdump -Cv` prints it to
 * $TMP_OUTPUT_DIR/hexdump.txt. It uses nothing but the contract's environment variables and
 * plain stdio, as an OSCAR script would.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const char *path) {
    fprintf(stderr, "error: %s %s: %s\n", what, path ? path : "", strerror(errno));
    return 1;
}

int main(void) {
    const char *input = getenv("INPUT_FILE_PATH");
    const char *outdir = getenv("TMP_OUTPUT_DIR");
    if (!input || !outdir) {
        fprintf(stderr, "error: INPUT_FILE_PATH and TMP_OUTPUT_DIR must be set\n");
        return 1;
    }
    char outpath[4096];
    if (snprintf(outpath, sizeof outpath, "%s/hexdump.txt", outdir) >= (int)sizeof outpath) {
        fprintf(stderr, "error: TMP_OUTPUT_DIR is too long\n");
        return 1;
    }
    FILE *in = fopen(input, "rb");
    if (!in) return fail("opening", input);
    FILE *out = fopen(outpath, "w");
    if (!out) return fail("creating", outpath);

    unsigned char row[16];
    unsigned long offset = 0;
    size_t n;
    while ((n = fread(row, 1, sizeof row, in)) > 0) {
        fprintf(out, "%08lx ", offset);
        for (size_t i = 0; i < 16; i++) {
            if (i == 8) fputc(' ', out);
            if (i < n) fprintf(out, " %02x", row[i]);
            else fputs("   ", out);
        }
        fputs("  |", out);
        for (size_t i = 0; i < n; i++)
            fputc(row[i] >= 0x20 && row[i] < 0x7f ? row[i] : '.', out);
        fputs("|\n", out);
        offset += n;
    }
    if (ferror(in)) return fail("reading", input);
    if (offset > 0) fprintf(out, "%08lx\n", offset);
    if (fclose(out) != 0) return fail("writing", outpath);
    fclose(in);
    printf("%lu bytes dumped\n", offset);
    return 0;
}
