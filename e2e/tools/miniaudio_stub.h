/*
 * Stand-in for miniaudio.h, which Ollama's module zip omits (llama.cpp's
 * vendor/ directory is not part of it). It declares just what
 * llama.cpp's tools/mtmd/mtmd-helper.cpp calls; every decoder call fails, so
 * an audio attachment is refused and nothing else changes. Used only to
 * build the e2e test's Ollama server (e2e/tools/ollama.sh).
 */
#ifndef NEMOCLAW_MINIAUDIO_STUB_H
#define NEMOCLAW_MINIAUDIO_STUB_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t ma_uint64;
typedef uint32_t ma_uint32;
typedef int ma_result;
#define MA_SUCCESS 0
#define MA_NOT_IMPLEMENTED (-29)

typedef enum { ma_format_unknown = 0, ma_format_f32 = 5 } ma_format;
typedef enum { ma_encoding_format_unknown = 0, ma_encoding_format_wav } ma_encoding_format;

typedef struct {
	ma_format format;
	ma_uint32 channels;
	ma_uint32 sampleRate;
} ma_decoder_config;

typedef struct {
	int unused;
} ma_decoder;

static inline ma_decoder_config ma_decoder_config_init(ma_format format, ma_uint32 channels, ma_uint32 sampleRate) {
	ma_decoder_config c;
	c.format = format;
	c.channels = channels;
	c.sampleRate = sampleRate;
	return c;
}

static inline ma_result ma_decoder_init_memory(const void *data, size_t size, const ma_decoder_config *config, ma_decoder *decoder) {
	(void)data; (void)size; (void)config; (void)decoder;
	return MA_NOT_IMPLEMENTED;
}

static inline ma_result ma_decoder_get_length_in_pcm_frames(ma_decoder *decoder, ma_uint64 *length) {
	(void)decoder;
	*length = 0;
	return MA_NOT_IMPLEMENTED;
}

static inline ma_result ma_decoder_read_pcm_frames(ma_decoder *decoder, void *out, ma_uint64 count, ma_uint64 *read) {
	(void)decoder; (void)out; (void)count;
	*read = 0;
	return MA_NOT_IMPLEMENTED;
}

static inline ma_result ma_decoder_uninit(ma_decoder *decoder) {
	(void)decoder;
	return MA_SUCCESS;
}

#endif
