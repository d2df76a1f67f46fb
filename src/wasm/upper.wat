;; Copyright the upcase authors. MIT license.
;; C toupper in the C locale on bytes in linear memory, in place, with
;; 128-bit SIMD: 64 bytes per loop turn, then 16, then one at a time.
;; Built into ../_simd_module.ts by build.ts: deno task build:wasm
(module
  (import "env" "memory" (memory 1))
  (func $upper (export "upper") (param $ptr i32) (param $len i32)
    (local $end i32)
    (local $v v128)
    (local $b i32)
    ;; 64 bytes a turn
    (local.set $end
      (i32.add (local.get $ptr) (i32.and (local.get $len) (i32.const -64))))
    (block $done64
      (loop $turn64
        (br_if $done64 (i32.ge_u (local.get $ptr) (local.get $end)))
        (v128.store offset=0 (local.get $ptr)
          (call $upper16 (v128.load offset=0 (local.get $ptr))))
        (v128.store offset=16 (local.get $ptr)
          (call $upper16 (v128.load offset=16 (local.get $ptr))))
        (v128.store offset=32 (local.get $ptr)
          (call $upper16 (v128.load offset=32 (local.get $ptr))))
        (v128.store offset=48 (local.get $ptr)
          (call $upper16 (v128.load offset=48 (local.get $ptr))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 64)))
        (br $turn64)))
    ;; 16 bytes a turn
    (local.set $end
      (i32.add (local.get $end) (i32.and (local.get $len) (i32.const 48))))
    (block $done16
      (loop $turn16
        (br_if $done16 (i32.ge_u (local.get $ptr) (local.get $end)))
        (v128.store (local.get $ptr)
          (call $upper16 (v128.load (local.get $ptr))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 16)))
        (br $turn16)))
    ;; the last 0 to 15 bytes
    (local.set $end
      (i32.add (local.get $end) (i32.and (local.get $len) (i32.const 15))))
    (block $done1
      (loop $turn1
        (br_if $done1 (i32.ge_u (local.get $ptr) (local.get $end)))
        (local.set $b (i32.load8_u (local.get $ptr)))
        (if (i32.lt_u (i32.sub (local.get $b) (i32.const 0x61)) (i32.const 26))
          (then
            (i32.store8 (local.get $ptr)
              (i32.xor (local.get $b) (i32.const 0x20)))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 1)))
        (br $turn1))))
  ;; Each lane: b - 'a' < 26 (unsigned) means a-z; clear bit 5 there.
  (func $upper16 (param $v v128) (result v128)
    (v128.xor (local.get $v)
      (v128.and
        (i8x16.lt_u
          (i8x16.sub (local.get $v) (v128.const i8x16 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61 0x61))
          (v128.const i8x16 26 26 26 26 26 26 26 26 26 26 26 26 26 26 26 26))
        (v128.const i8x16 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20 0x20)))))
