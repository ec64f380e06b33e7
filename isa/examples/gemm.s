; gemm.s — tiled, double-buffered GEMM on every engine.
;
;   C[M x N] (f32) = A[M x K] (bf16) · B[K x N] (bf16)
;
; Tiles: TM rows of A stream through a TK x TN weight tile of B; the K
; dimension accumulates in ACC (first k-tile `mode=set`, then `mode=acc`).
; Edge tiles use the same loop body: each tile's size is min(T, remaining),
; computed with `mini`. A/B tiles and ACC/C tiles are double-buffered:
; the DMA loads tile i+1 while the MXU multiplies tile i, and the VPU drains
; one ACC tile while the MXU fills the other. Each output tile is stored
; one tile late, so the DMA never waits for the VPU before loading the next
; operands.
;
; The parameter block below is the only place sizes live; everything else
; is derived at run time or from these symbols. (Tests reuse this file for
; other sizes by replacing the block.)
;
; Semaphores (one producer, one consumer each):
;   s0  DMA -> MXU   A/B tile loaded          s1  MXU -> DMA   A/B slot free (2 credits)
;   s2  MXU -> VPU   ACC tile complete        s3  VPU -> MXU   ACC tile free (2 credits)
;   s4  VPU -> DMA   C tile in SPM            s5  DMA -> VPU   C buffer free (2 credits)

; ---- parameters ------------------------------------------------------------
.equ M, 20
.equ K, 24
.equ N, 20
.equ TM, 16             ; rows of A per tile
.equ TK, 8              ; reduction depth per tile (<= mxu_k)
.equ TN, 8              ; output columns per tile (<= mxu_n)
.equ A_ADDR, 0x0        ; DRAM
.equ B_ADDR, 0x400
.equ C_ADDR, 0x800
.equ A_ROW, 48          ; K * 2: bytes per A row in DRAM
.equ B_ROW, 40          ; N * 2
.equ C_ROW, 80          ; N * 4
.equ TK2, 16            ; TK * 2: bytes per A-tile row in SPM
.equ TN2, 16            ; TN * 2: bytes per B-tile row in SPM
.equ TN4, 32            ; TN * 4: bytes per ACC / C-tile row
.equ A_SLOT, 256        ; TM * TK2: one A tile in SPM
.equ B_BASE, 512        ; 2 * A_SLOT: B tiles follow the A tiles
.equ B_SLOT, 128        ; TK * TN2
.equ C_BASE, 768        ; B_BASE + 2 * B_SLOT
.equ C_SLOT, 512        ; TM * TN4
.equ ACC_TILE, 512      ; TM * TN4: one ACC tile
.input  "A" bf16 [M, K] @ A_ADDR
.input  "B" bf16 [K, N] @ B_ADDR
.output "C" f32  [M, N] @ C_ADDR
; ----------------------------------------------------------------------------

        li   r1, M
        li   r2, K
        li   r3, N
        li   r27, 1
        li   r29, TN4               ; VPU row strides
        mxu.signal s1, 2            ; both A/B slots start free
        vpu.signal s3, 2            ; both ACC tiles start free
        dma.signal s5, 2            ; both C buffers start free
        li   r18, 0                 ; A/B slot, toggles every k-step
        li   r19, 0                 ; ACC/C slot, toggles every output tile
        li   r30, 0                 ; no output tile waiting to be stored
        li   r10, 0                 ; n0
n_loop:
        sub  r13, r3, r10
        mini r13, r13, TN           ; tn = min(TN, N - n0)
        shli r25, r13, 1            ; tn * 2: B run bytes
        shli r26, r13, 2            ; tn * 4: C run bytes
        li   r11, 0                 ; m0
m_loop:
        sub  r14, r1, r11
        mini r14, r14, TM           ; tm = min(TM, M - m0)
        muli r20, r19, ACC_TILE     ; this output tile's ACC address
        mxu.wait s3, 1              ; ...once the VPU has drained it
        li   r12, 0                 ; k0
k_loop:
        sub  r15, r2, r12
        mini r15, r15, TK           ; tk = min(TK, K - k0)
        shli r24, r15, 1            ; tk * 2: A run bytes
        muli r16, r18, A_SLOT       ; A tile in SPM
        muli r17, r18, B_SLOT
        addi r17, r17, B_BASE       ; B tile in SPM
        muli r21, r11, A_ROW        ; &A[m0][k0]
        shli r22, r12, 1
        add  r21, r21, r22
        addi r21, r21, A_ADDR
        muli r22, r12, B_ROW        ; &B[k0][n0]
        shli r23, r10, 1
        add  r22, r22, r23
        addi r22, r22, B_ADDR
        dma.wait   s1, 1
        dma.dim    1, count=r14, sstride=A_ROW, dstride=TK2
        dma.copy   spm[r16], dram[r21], bytes=r24
        dma.dim    1, count=r15, sstride=B_ROW, dstride=TN2
        dma.copy   spm[r17], dram[r22], bytes=r25
        dma.signal s0, 1
        mxu.wait   s0, 1
        mxu.ldw    spm[r17], k=r15, n=r13, stride=TN2, dtype=bf16, trans=n
        bne  r12, r0, accumulate
        mxu.mm     acc[r20], spm[r16], m=r14, astride=TK2, dstride=TN4, mode=set
        jmp  multiplied
accumulate:
        mxu.mm     acc[r20], spm[r16], m=r14, astride=TK2, dstride=TN4, mode=acc
multiplied:
        mxu.signal s1, 1            ; the A/B slot may be refilled
        sub  r18, r27, r18
        addi r12, r12, TK
        blt  r12, r2, k_loop
        mxu.signal s2, 1            ; ACC tile complete
        muli r28, r19, C_SLOT
        addi r28, r28, C_BASE       ; C buffer in SPM
        vpu.wait   s2, 1
        vpu.wait   s5, 1
        vpu.un     mov, spm[r28], acc[r20], rows=r14, cols=r13, dstride=r29, astride=r29, abcast=full
        vpu.signal s3, 1            ; ACC tile free again
        vpu.signal s4, 1            ; C tile ready to store
        ; Store the *previous* output tile: its VPU move is long done, so the
        ; DMA does not stall before loading the next tile's operands.
        beq  r30, r0, remember
        dma.wait   s4, 1
        dma.dim    1, count=r31, sstride=TN4, dstride=C_ROW
        dma.copy   dram[r9], spm[r8], bytes=r7
        dma.signal s5, 1            ; C buffer free again
remember:
        li   r30, 1                 ; a tile is pending
        muli r9, r11, C_ROW         ; &C[m0][n0] of this tile
        shli r22, r10, 2
        add  r9, r9, r22
        addi r9, r9, C_ADDR
        addi r31, r14, 0            ; its rows
        addi r8, r28, 0             ; its C buffer
        addi r7, r26, 0             ; its run bytes
        sub  r19, r27, r19
        addi r11, r11, TM
        blt  r11, r1, m_loop
        addi r10, r10, TN
        blt  r10, r3, n_loop
        ; the last tile
        dma.wait   s4, 1
        dma.dim    1, count=r31, sstride=TN4, dstride=C_ROW
        dma.copy   dram[r9], spm[r8], bytes=r7
        halt
