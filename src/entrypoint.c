// Routine registration lives in the Rust static library (extendr_module!);
// forwarding to it from C keeps the linker from dropping the library.
void R_init_mixedrs_extendr(void *dll);

void R_init_mixedrs(void *dll) {
    R_init_mixedrs_extendr(dll);
}
