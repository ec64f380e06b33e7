; layernorm.s — layer normalization over the rows of a matrix.
;
;   Y[i][:] = (X[i][:] - mean_i) / sqrt(var_i + eps) * gamma + beta
;
; Same software pipeline as softmax.s (two block buffers, DMA loads block
; i+1 while the VPU normalizes block i). gamma and beta live in a DRAM
; segment and are loaded into SPM once, before the first block.
;
; Semaphores:
;   s0  DMA -> VPU   block loaded (the first signal also covers gamma/beta)
;   s1  VPU -> DMA   block computed

.equ R, 9
.equ C, 20
.equ RB, 4
.equ ROW, 80            ; C * 4
.equ BLOCK, 320         ; RB * ROW
.equ SQ, 640            ; SPM: squares of the centered block
.equ MEAN, 960          ; SPM: per-row means (RB floats)
.equ VAR, 976           ; SPM: per-row 1/sqrt(var + eps)
.equ GAMMA, 1024        ; SPM: gamma (C floats)
.equ BETA, 1104         ; SPM: beta (C floats)
.equ X_ADDR, 0x0
.equ Y_ADDR, 0x1000
.equ P_ADDR, 0x2000     ; gamma then beta in DRAM
.input  "X" f32 [R, C] @ X_ADDR
.output "Y" f32 [R, C] @ Y_ADDR
.segment "gamma_beta" @ P_ADDR
.f32 1.0, 0.5, 2.0, -1.0, 1.5, 0.25, 1.0, 3.0, 0.75, 1.25, 1.0, 0.5, 2.0, -1.0, 1.5, 0.25, 1.0, 3.0, 0.75, 1.25
.f32 0.0, 0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 0.5, 0.0, 0.0, 0.25, 0.1, -0.2, 0.3, 0.0, 1.0, -1.0, 0.5, 0.0, 0.0

        li   r1, R
        li   r2, C
        li   r3, ROW
        li   r4, 4
        li   r5, 1
        li   r6, 0x3d4ccccd     ; 1/C = 0.05f
        li   r7, 0x3727c5ac     ; eps = 1e-5f
        ; gamma and beta (one copy: they are adjacent in DRAM and in SPM)
        dma.copy   spm[GAMMA], dram[P_ADDR], bytes=160
        ; prologue: block 0
        li   r11, R
        mini r11, r11, RB
        muli r12, r11, ROW
        dma.copy   spm[0], dram[X_ADDR], bytes=r12
        dma.signal s0, 1
        li   r20, 0             ; first row of block i
        li   r21, 0             ; buffer of block i
block:
        addi r22, r20, RB
        bge  r22, r1, compute
        sub  r13, r1, r22
        mini r13, r13, RB
        muli r14, r13, ROW
        muli r15, r22, ROW
        addi r15, r15, X_ADDR
        li   r16, BLOCK
        sub  r16, r16, r21
        dma.copy   spm[r16], dram[r15], bytes=r14
        dma.signal s0, 1
compute:
        sub  r11, r1, r20
        mini r11, r11, RB
        vpu.wait   s0, 1
        vpu.red    sum, spm[MEAN], spm[r21], rows=r11, cols=r2, dstride=r4, astride=r3, mode=set
        vpu.bins   mul, spm[MEAN], spm[MEAN], r6, rows=r11, cols=r5, dstride=r4, astride=r4, abcast=full, order=as
        vpu.bin    sub, spm[r21], spm[r21], spm[MEAN], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r4, abcast=full, bbcast=col
        vpu.bin    mul, spm[SQ], spm[r21], spm[r21], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r3, abcast=full, bbcast=full
        vpu.red    sum, spm[VAR], spm[SQ], rows=r11, cols=r2, dstride=r4, astride=r3, mode=set
        vpu.bins   mul, spm[VAR], spm[VAR], r6, rows=r11, cols=r5, dstride=r4, astride=r4, abcast=full, order=as
        vpu.bins   add, spm[VAR], spm[VAR], r7, rows=r11, cols=r5, dstride=r4, astride=r4, abcast=full, order=as
        vpu.un     rsqrt, spm[VAR], spm[VAR], rows=r11, cols=r5, dstride=r4, astride=r4, abcast=full
        vpu.bin    mul, spm[r21], spm[r21], spm[VAR], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r4, abcast=full, bbcast=col
        vpu.bin    mul, spm[r21], spm[r21], spm[GAMMA], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r3, abcast=full, bbcast=row
        vpu.bin    add, spm[r21], spm[r21], spm[BETA], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r3, abcast=full, bbcast=row
        vpu.signal s1, 1
        muli r12, r11, ROW
        muli r15, r20, ROW
        addi r15, r15, Y_ADDR
        dma.wait   s1, 1
        dma.copy   dram[r15], spm[r21], bytes=r12
        addi r20, r20, RB
        li   r16, BLOCK
        sub  r21, r16, r21
        blt  r20, r1, block
        halt
