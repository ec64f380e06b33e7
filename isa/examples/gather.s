; gather.s — embedding lookup: Y[t] = table[ids[t]] + pos[t].
;
; The token ids (int64) come in as an input; the DMA copies them into SPM,
; gathers the table rows they select (negative ids count from the end, as in
; ONNX), and loads the position rows; the VPU adds the two; the DMA stores
; the result. Ids outside [-V, V) fault.
;
; Semaphores:
;   s0  DMA -> VPU   rows gathered
;   s1  VPU -> DMA   sum computed

.equ T, 6               ; tokens
.equ V, 5               ; table rows
.equ D, 4               ; embedding width
.equ ROW, 16            ; D * 4
.equ IDS, 0             ; SPM: ids (T int64)
.equ ROWS, 64           ; SPM: gathered rows (T x D)
.equ POS, 192           ; SPM: position rows
.input  "ids" i64 [T] @ 0x0
.output "Y" f32 [T, D] @ 0x100
.segment "table" @ 0x1000
.f32 0, 1, 2, 3,  10, 11, 12, 13,  20, 21, 22, 23,  30, 31, 32, 33,  40, 41, 42, 43
.segment "pos" @ 0x1100
.f32 0.5, 0.5, 0.5, 0.5,  1, 1, 1, 1,  1.5, 1.5, 1.5, 1.5,  2, 2, 2, 2,  2.5, 2.5, 2.5, 2.5,  3, 3, 3, 3

        li   r1, T
        li   r2, ROW
        li   r3, V
        li   r4, D
        dma.copy   spm[IDS], dram[0x0], bytes=48
        dma.gather spm[ROWS], dram[0x1000], spm[IDS], rows=r1, bytes=r2, limit=r3, itype=i64
        dma.copy   spm[POS], dram[0x1100], bytes=96
        dma.signal s0, 1
        vpu.wait   s0, 1
        vpu.bin    add, spm[ROWS], spm[ROWS], spm[POS], rows=r1, cols=r4, dstride=r2, astride=r2, bstride=r2, abcast=full, bbcast=full
        vpu.signal s1, 1
        dma.wait   s1, 1
        dma.copy   dram[0x100], spm[ROWS], bytes=96
        halt
