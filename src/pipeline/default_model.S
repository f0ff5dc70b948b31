/* default_model.S — the shipped default model's bytes and its distilled CLEAR weights
 * (CD_DEFAULT_MODEL / CD_DEFAULT_CLEAR, set by the Makefile: models/fmnist.safetensors and
 * models/fmnist_clear.safetensors, or an empty file when absent) in the library's read-only data (embedded.c). */
    .section .rodata
    .balign 64
    .global cd_default_model_start
    .global cd_default_model_end
cd_default_model_start:
    .incbin CD_DEFAULT_MODEL
cd_default_model_end:
    .byte 0
    .balign 64
    .global cd_default_clear_start
    .global cd_default_clear_end
cd_default_clear_start:
    .incbin CD_DEFAULT_CLEAR
cd_default_clear_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
