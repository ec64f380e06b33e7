; softmax.s — softmax over the rows of a matrix, software-pipelined.
;
;   Y[i][:] = exp(X[i][:] - max_j X[i][j]) / sum_j exp(X[i][j] - max_j X[i][j])
;
; Rows go through SPM in blocks of RB rows, alternating between two
; buffers: while the VPU works on block i, the DMA loads block i+1. The DMA
; stores block i before it loads block i+2 into the same buffer, and the DMA
; engine orders its own transfers, so only two semaphores are needed.
;
; Semaphores:
;   s0  DMA -> VPU   block loaded
;   s1  VPU -> DMA   block computed

.equ R, 10              ; rows
.equ C, 24              ; columns
.equ RB, 4              ; rows per block
.equ ROW, 96            ; C * 4: bytes per row
.equ BLOCK, 384         ; RB * ROW: bytes per block buffer
.equ MAXC, 768          ; SPM: per-row maxima (RB floats)
.equ SUMC, 784          ; SPM: per-row sums
.equ X_ADDR, 0x0
.equ Y_ADDR, 0x1000
.input  "X" f32 [R, C] @ X_ADDR
.output "Y" f32 [R, C] @ Y_ADDR

        li   r1, R
        li   r2, C
        li   r3, ROW            ; row stride of a block
        li   r4, 4              ; stride of a packed column vector
        li   r5, 1              ; one column
        li   r27, 1
        ; prologue: load block 0 into buffer 0
        li   r11, R
        mini r11, r11, RB       ; rows in block 0
        muli r12, r11, ROW
        dma.copy   spm[0], dram[X_ADDR], bytes=r12
        dma.signal s0, 1
        li   r10, 0             ; i: block being computed
        li   r20, 0             ; first row of block i
        li   r21, 0             ; buffer of block i (0 or BLOCK)
block:
        ; load block i+1, if any, into the other buffer
        addi r22, r20, RB       ; its first row
        bge  r22, r1, compute
        sub  r13, r1, r22
        mini r13, r13, RB
        muli r14, r13, ROW      ; its bytes
        muli r15, r22, ROW
        addi r15, r15, X_ADDR   ; its DRAM address
        li   r16, BLOCK
        sub  r16, r16, r21      ; the other buffer
        dma.copy   spm[r16], dram[r15], bytes=r14
        dma.signal s0, 1
compute:
        sub  r11, r1, r20
        mini r11, r11, RB       ; rows in block i
        vpu.wait   s0, 1
        vpu.red    max, spm[MAXC], spm[r21], rows=r11, cols=r2, dstride=r4, astride=r3, mode=set
        vpu.bin    sub, spm[r21], spm[r21], spm[MAXC], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r4, abcast=full, bbcast=col
        vpu.un     exp, spm[r21], spm[r21], rows=r11, cols=r2, dstride=r3, astride=r3, abcast=full
        vpu.red    sum, spm[SUMC], spm[r21], rows=r11, cols=r2, dstride=r4, astride=r3, mode=set
        vpu.bin    div, spm[r21], spm[r21], spm[SUMC], rows=r11, cols=r2, dstride=r3, astride=r3, bstride=r4, abcast=full, bbcast=col
        vpu.signal s1, 1
        ; store block i
        muli r12, r11, ROW
        muli r15, r20, ROW
        addi r15, r15, Y_ADDR
        dma.wait   s1, 1
        dma.copy   dram[r15], spm[r21], bytes=r12
        ; next block
        addi r20, r20, RB
        li   r16, BLOCK
        sub  r21, r16, r21
        blt  r20, r1, block
        halt
