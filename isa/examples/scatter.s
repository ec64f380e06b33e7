; scatter.s — KV-cache style row update: cache[ids[t]] = rows[t].
;
; The row ids (int64) and the new rows come in as inputs; the DMA copies
; both into SPM and scatters the rows into the cache table in DRAM, which is
; the output. Negative ids count from the end, as in ONNX; when two ids are
; equal the later row wins. Ids outside [-V, V) fault and write nothing.

.equ T, 3               ; rows written
.equ V, 5               ; cache rows
.equ ROW, 16            ; 4 f32 per row
.equ IDS, 0             ; SPM: ids (T int64)
.equ NEW, 64            ; SPM: new rows (T x 4)
.input  "ids" i64 [T] @ 0x0
.input  "rows" f32 [T, 4] @ 0x40
.output "cache" f32 [V, 4] @ 0x1000
.segment "cache" @ 0x1000
.f32 0, 1, 2, 3,  10, 11, 12, 13,  20, 21, 22, 23,  30, 31, 32, 33,  40, 41, 42, 43

        li   r1, T
        li   r2, ROW
        li   r3, V
        dma.copy    spm[IDS], dram[0x0], bytes=24
        dma.copy    spm[NEW], dram[0x40], bytes=48
        dma.scatter dram[0x1000], spm[NEW], spm[IDS], rows=r1, bytes=r2, limit=r3, itype=i64
        halt
