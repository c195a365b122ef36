/* SPDX-License-Identifier: MIT */
/* A small writer of ACPI Machine Language (ACPI 6.x, chapter 20) and of the
 * byte buffers the tables are built in. Writers append to a struct x86_buf;
 * a failed allocation or malformed input (a bad name) sets @oom, after which
 * the buffer is poisoned: further writes are ignored and its contents must
 * not be used. Callers check @oom once at the end.
 *
 * Constructs with a PkgLength (Scope, Device, Method, Package, Buffer) are
 * written as begin ... end pairs: begin returns a mark, end inserts the
 * PkgLength (its shortest encoding) once the body's size is known. Ends must
 * close in the reverse order of begins. */
#ifndef VMKIT_ARCH_X86_AML_H
#define VMKIT_ARCH_X86_AML_H

#include "arch/x86/x86.h"

/* ---- bytes ---------------------------------------------------------------- */
void x86_buf_put(struct x86_buf *b, const void *data, size_t len);
void x86_buf_u8(struct x86_buf *b, uint8_t v);
void x86_buf_u16(struct x86_buf *b, uint16_t v);   /* little-endian */
void x86_buf_u32(struct x86_buf *b, uint32_t v);
void x86_buf_u64(struct x86_buf *b, uint64_t v);
void x86_buf_zero(struct x86_buf *b, size_t len);
/* Zero bytes up to a multiple of @align (a power of two). */
void x86_buf_align(struct x86_buf *b, size_t align);
/* Overwrite bytes already written (ignored if out of range). */
void x86_buf_set(struct x86_buf *b, size_t off, const void *data, size_t len);

/* ---- AML data ------------------------------------------------------------- */
/* The number of bytes of the PkgLength of a construct whose body (what
 * follows the PkgLength) is @body bytes: 1..4, or 0 if it is too long
 * (the encoded length, which counts itself, must stay below 2^28). */
size_t aml_pkglength_size(size_t body);
/* Write the PkgLength for a body of @body bytes. */
void aml_pkglength(struct x86_buf *b, size_t body);
/* A NameString from an ASL path: "\\_SB.COM1", "^FOO", "_HID". Each segment
 * is 1-4 characters [A-Z_][A-Z0-9_]*, padded with '_'. */
void aml_namestring(struct x86_buf *b, const char *path);
/* An integer in its shortest encoding: ZeroOp, OneOp, OnesOp (all bits
 * set), or Byte/Word/DWord/QWord const. */
void aml_integer(struct x86_buf *b, uint64_t v);
/* A String (NUL-terminated ASCII, no NUL inside). */
void aml_string(struct x86_buf *b, const char *s);
/* The 32-bit compressed EISA id of "PNP0501"-style ids (3 letters, 4 hex
 * digits), as ASL's EISAID() encodes it; 0 with @ok false if malformed. */
uint32_t aml_eisaid_value(const char *id, bool *ok);
/* EISAID("...") as a DWordConst. */
void aml_eisaid(struct x86_buf *b, const char *id);
/* Buffer(){ bytes } with a known content. */
void aml_buffer(struct x86_buf *b, const void *data, size_t len);

/* ---- named objects and scopes ------------------------------------------- */
/* Name(path, ...): the data object must be written next. */
void aml_name(struct x86_buf *b, const char *path);
size_t aml_scope_begin(struct x86_buf *b, const char *path);
size_t aml_device_begin(struct x86_buf *b, const char *path);
/* Method(path, nargs 0..7, serialized). */
size_t aml_method_begin(struct x86_buf *b, const char *path, unsigned nargs, bool serialized);
/* Package(nelems){ ... }: write @nelems data objects, then aml_end. */
size_t aml_package_begin(struct x86_buf *b, uint8_t nelems);
/* Ends a Scope, Device, Method or Package. */
void aml_end(struct x86_buf *b, size_t mark);
/* Return(integer). */
void aml_return_integer(struct x86_buf *b, uint64_t v);

/* ---- resource templates (_CRS) -------------------------------------------- */
/* ResourceTemplate(){ ... }: write descriptors, then aml_restemplate_end,
 * which adds the end tag and closes the Buffer. */
size_t aml_restemplate_begin(struct x86_buf *b);
void aml_restemplate_end(struct x86_buf *b, size_t mark);
/* IO(Decode16, base, base, 1, len). */
void aml_res_io(struct x86_buf *b, uint16_t base, uint8_t len);
/* IRQNoFlags(){irq}, irq 0..15. */
void aml_res_irq_noflags(struct x86_buf *b, uint8_t irq);
/* Interrupt(ResourceConsumer, Level/Edge, ActiveHigh/Low, Exclusive/Shared){gsi}. */
void aml_res_interrupt(struct x86_buf *b, uint32_t gsi, bool level, bool active_low, bool shared);
/* Memory32Fixed(ReadWrite/ReadOnly, base, len). */
void aml_res_memory32_fixed(struct x86_buf *b, uint32_t base, uint32_t len, bool rw);
/* QWordMemory(ResourceConsumer or ResourceProducer, PosDecode, MinFixed,
 * MaxFixed, Cacheable or NonCacheable, ReadWrite, 0, base, base + len - 1,
 * 0, len); len > 0. */
void aml_res_qword_memory(struct x86_buf *b, uint64_t base, uint64_t len, bool cacheable,
			  bool producer);
/* DWordMemory(ResourceConsumer or ResourceProducer, PosDecode, MinFixed,
 * MaxFixed, Cacheable or NonCacheable, ReadWrite, 0, base, base + len - 1,
 * 0, len); len > 0, the range below 4 GiB. */
void aml_res_dword_memory(struct x86_buf *b, uint32_t base, uint32_t len, bool cacheable,
			  bool producer);
/* WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0,
 * min, max, 0, max - min + 1); min <= max, the length below 64 KiB. */
void aml_res_word_io(struct x86_buf *b, uint16_t min, uint16_t max);
/* WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min,
 * max, 0, max - min + 1); min <= max <= 255. */
void aml_res_word_bus_number(struct x86_buf *b, uint16_t min, uint16_t max);

#endif
