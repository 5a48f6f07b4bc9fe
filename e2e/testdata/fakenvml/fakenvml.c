// fakenvml.c: a stand-in libnvidia-ml.so.1 for the GPU e2e tests, with the
// few NVML entry points nemoclaw's inventory calls. Its GPUs come from
// FAKE_NVML_GPUS: "name,uuid,GiB,major.minor;..." (at most 8). It is built
// by the test with cc; nemoclaw loads it through go-nvml's dlopen exactly
// as it would the driver's. FAKE_NVML_INIT_FAIL=1 makes nvmlInit fail.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
struct gpu { char name[96], uuid[96]; unsigned long long bytes; int major, minor; };
typedef struct gpu *nvmlDevice_t;

static struct gpu gpus[8];
static unsigned ngpus;

nvmlReturn_t nvmlInit_v2(void)
{
	const char *fail = getenv("FAKE_NVML_INIT_FAIL");
	if (fail && *fail == '1')
		return 999; // NVML_ERROR_UNKNOWN
	const char *spec = getenv("FAKE_NVML_GPUS");
	ngpus = 0;
	if (!spec)
		return 0;
	char buf[2048];
	snprintf(buf, sizeof buf, "%s", spec);
	char *save = NULL;
	for (char *g = strtok_r(buf, ";", &save); g && ngpus < 8; g = strtok_r(NULL, ";", &save)) {
		struct gpu *d = &gpus[ngpus];
		unsigned gib = 0;
		char name[96], uuid[96];
		if (sscanf(g, "%95[^,],%95[^,],%u,%d.%d", name, uuid, &gib, &d->major, &d->minor) != 5)
			continue;
		snprintf(d->name, sizeof d->name, "%s", name);
		snprintf(d->uuid, sizeof d->uuid, "%s", uuid);
		d->bytes = (unsigned long long)gib << 30;
		ngpus++;
	}
	return 0;
}
nvmlReturn_t nvmlInit(void) { return nvmlInit_v2(); }
nvmlReturn_t nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(nvmlReturn_t r) { return r == 999 ? "Unknown Error (fake)" : "fake NVML error"; }

static nvmlReturn_t copy(char *dst, unsigned len, const char *src)
{
	if (strlen(src) + 1 > len)
		return 7; // NVML_ERROR_INSUFFICIENT_SIZE
	strcpy(dst, src);
	return 0;
}
nvmlReturn_t nvmlSystemGetDriverVersion(char *v, unsigned len) { return copy(v, len, "550.54.15"); }
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { *v = 12040; return 0; }
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 12040; return 0; }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *n) { *n = ngpus; return 0; }
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d)
{
	if (i >= ngpus)
		return 2; // NVML_ERROR_INVALID_ARGUMENT
	*d = &gpus[i];
	return 0;
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *s, unsigned len) { return copy(s, len, d->name); }
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *s, unsigned len) { return copy(s, len, d->uuid); }
nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t d, unsigned *m) { *m = (unsigned)(d - gpus); return 0; }
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m)
{
	m->total = d->bytes;
	m->free = d->bytes / 4 * 3;
	m->used = d->bytes - m->free;
	return 0;
}
nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor)
{
	*major = d->major, *minor = d->minor;
	return 0;
}
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned *cur, unsigned *pending)
{
	(void)d;
	*cur = *pending = 0;
	return 0;
}
