; loop.s — a counted loop with address registers.
;
; y = 2 * x + 1 for a vector of 96 fp32 values, processed in 4 chunks of 24:
; the DMA loads a chunk into SPM, the VPU computes in place, the DMA stores
; it back. The same three instructions serve every chunk because the DRAM
; and SPM addresses live in registers that the loop advances.
;
; Semaphores (one producer, one consumer each):
;   s0  DMA -> VPU   chunk loaded
;   s1  VPU -> DMA   chunk computed

.input  "x" f32 [96] @ 0x0
.output "y" f32 [96] @ 0x200

.equ CHUNK, 24          ; elements per chunk
.equ CHUNK_BYTES, 96    ; CHUNK * 4

        li   r1, 4              ; chunks left
        li   r2, 0x0            ; DRAM address of x[chunk]
        li   r3, 0x200          ; DRAM address of y[chunk]
        li   r4, 0              ; SPM buffer
        li   r5, 1              ; VPU rows
        li   r6, CHUNK          ; VPU cols
        li   r7, CHUNK_BYTES    ; VPU row stride (one row: any value works)
        li   r8, 0x40000000     ; 2.0f
        li   r9, 0x3f800000     ; 1.0f
next:
        dma.copy   spm[r4], dram[r2], bytes=CHUNK_BYTES
        dma.signal s0, 1
        vpu.wait   s0, 1
        vpu.bins   mul, spm[r4], spm[r4], r8, rows=r5, cols=r6, dstride=r7, astride=r7, abcast=full, order=as
        vpu.bins   add, spm[r4], spm[r4], r9, rows=r5, cols=r6, dstride=r7, astride=r7, abcast=full, order=as
        vpu.signal s1, 1
        dma.wait   s1, 1
        dma.copy   dram[r3], spm[r4], bytes=CHUNK_BYTES
        addi r2, r2, CHUNK_BYTES
        addi r3, r3, CHUNK_BYTES
        loop r1, next
        halt
