/*
 * A fake libnvidia-ml.so.1 for benchrun's tests: the NVML entry points
 * `benchrun gpu-exporter` calls (through nvml-wrapper, which loads the library
 * with dlopen), answering from a state file the test writes.
 *
 * Build: cc -shared -fPIC -o DIR/libnvidia-ml.so.1 fake_nvml.c -lpthread
 *        (-DFAKE_NVML_OLD_DRIVER leaves out entry points older drivers lack:
 *        nvmlDeviceGetTotalEnergyConsumption and nvmlDeviceGetMemoryInfo_v2)
 * Run:   LD_LIBRARY_PATH=DIR FAKE_NVML_STATE=FILE benchrun gpu-exporter ...
 *
 * The state file is reread on every call (write a new one and rename it over
 * the old). One "key value" per line; the value runs to the end of the line:
 *
 *   driver 570.124.06
 *   gpus 2
 *   gpu0.name NVIDIA H100 80GB HBM3
 *   gpu0.uuid GPU-...
 *   gpu0.bus_id 00000000:18:00.0
 *   gpu0.power_mw 312500           nvmlDeviceGetPowerUsage (mW)
 *   gpu0.energy_mj 123456789       nvmlDeviceGetTotalEnergyConsumption (mJ)
 *   gpu0.power_limit_mw 700000     nvmlDeviceGetEnforcedPowerLimit (mW)
 *   gpu0.util_gpu 87, gpu0.util_mem 41          nvmlDeviceGetUtilizationRates
 *   gpu0.mem_total, .mem_reserved, .mem_used, .mem_free (bytes)
 *   gpu0.temp 63                   nvmlDeviceGetTemperature (GPU sensor)
 *   gpu0.sm_clock, gpu0.mem_clock (MHz)          nvmlDeviceGetClockInfo
 *   gpu0.fan 40                    nvmlDeviceGetFanSpeed_v2 (fan 0)
 *   gpu0.throttle 4                nvmlDeviceGetCurrentClocksThrottleReasons
 *   gpu0.power_violation_ns, gpu0.thermal_violation_ns
 *   gpu0.ecc_sbe, gpu0.ecc_dbe     volatile corrected / uncorrected
 *   gpu0.pcie_replay
 *   gpu0.pcie_tx_kbs, gpu0.pcie_rx_kbs (KB/s)
 *   gpu0.xid 79 + gpu0.xid_seq 1   a new sequence number is one new XID event
 *   gpu0.lost 1                    every call on the GPU: NVML_ERROR_GPU_IS_LOST
 *   gpu0.lost 2                    lost mid-read: the handle and the UUID still
 *                                  answer, every reading is lost
 *
 * A field that is absent answers NVML_ERROR_NOT_SUPPORTED, as a GPU without
 * it does. Without a state file, nvmlInit_v2 answers NVML_ERROR_DRIVER_NOT_LOADED.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_GPU_IS_LOST 15

#define MAX_GPUS 16
#define EVENT_XID_CRITICAL 8ULL

typedef struct nvmlDevice_st {
    unsigned index;
} *nvmlDevice_t;

typedef struct nvmlEventSet_st {
    unsigned long long registered[MAX_GPUS];
    unsigned long long delivered_seq[MAX_GPUS];
} *nvmlEventSet_t;

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned gpu, memory;
} nvmlUtilization_t;

typedef struct {
    unsigned long long referenceTime, violationTime;
} nvmlViolationTime_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

static struct nvmlDevice_st devices[MAX_GPUS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;

/* The state file's lines, read whole on every lookup. */
static char state[64 * 1024];

static int load_state(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    if (!path) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(state, 1, sizeof state - 1, f);
    state[n] = 0;
    fclose(f);
    return 0;
}

/* The value of `key` (up to the end of its line) into out; 0 when present. */
static int lookup(const char *key, char *out, size_t cap) {
    int found = -1;
    pthread_mutex_lock(&lock);
    if (load_state() == 0) {
        size_t klen = strlen(key);
        for (char *line = state; line && *line; ) {
            char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line) : strlen(line);
            if (len > klen && strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                size_t vlen = len - klen - 1;
                if (vlen >= cap) vlen = cap - 1;
                memcpy(out, line + klen + 1, vlen);
                out[vlen] = 0;
                found = 0;
                break;
            }
            line = end ? end + 1 : NULL;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

static int lookup_u64(const char *key, unsigned long long *out) {
    char v[64];
    if (lookup(key, v, sizeof v) != 0) return -1;
    *out = strtoull(v, NULL, 10);
    return 0;
}

static unsigned gpu_count(void) {
    unsigned long long n = 0;
    if (lookup_u64("gpus", &n) != 0) return 0;
    return n > MAX_GPUS ? MAX_GPUS : (unsigned)n;
}

/* 0: answers; 1: lost; 2: lost after its handle and UUID were read. */
static unsigned long long lost(unsigned index) {
    char key[64];
    unsigned long long v = 0;
    snprintf(key, sizeof key, "gpu%u.lost", index);
    return lookup_u64(key, &v) == 0 ? v : 0;
}

/* Checks the handle; NVML_SUCCESS when the GPU can be asked. An identity call
 * (the UUID) still answers on a GPU lost mid-read. */
static nvmlReturn_t check_for(nvmlDevice_t d, int identity) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!d || d < devices || d >= devices + MAX_GPUS || d->index >= gpu_count())
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long l = lost(d->index);
    if (l == 1 || (l == 2 && !identity)) return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

static nvmlReturn_t check(nvmlDevice_t d) { return check_for(d, 0); }

/* One numeric field of one GPU. */
static nvmlReturn_t field(nvmlDevice_t d, const char *name, unsigned long long *out) {
    nvmlReturn_t r = check(d);
    if (r != NVML_SUCCESS) return r;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    char key[64];
    snprintf(key, sizeof key, "gpu%u.%s", d->index, name);
    return lookup_u64(key, out) == 0 ? NVML_SUCCESS : NVML_ERROR_NOT_SUPPORTED;
}

static nvmlReturn_t field_u32(nvmlDevice_t d, const char *name, unsigned *out) {
    unsigned long long v;
    nvmlReturn_t r = field(d, name, &v);
    if (r == NVML_SUCCESS) *out = (unsigned)v;
    return r;
}

/* One text field of one GPU into a caller's buffer of `length`. */
static nvmlReturn_t text(nvmlDevice_t d, const char *name, char *out, unsigned length) {
    nvmlReturn_t r = check_for(d, strcmp(name, "uuid") == 0);
    if (r != NVML_SUCCESS) return r;
    char key[64], v[256];
    snprintf(key, sizeof key, "gpu%u.%s", d->index, name);
    if (lookup(key, v, sizeof v) != 0) return NVML_ERROR_NOT_SUPPORTED;
    if (!out || strlen(v) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, v);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) {
    if (load_state() != 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    for (unsigned i = 0; i < MAX_GPUS; i++) devices[i].index = i;
    initialized = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    initialized = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned length) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    char v[96];
    if (lookup("driver", v, sizeof v) != 0) return NVML_ERROR_NOT_SUPPORTED;
    if (!version || strlen(v) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(version, v);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= gpu_count()) return NVML_ERROR_INVALID_ARGUMENT;
    if (lost(index) == 1) return NVML_ERROR_GPU_IS_LOST;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned *index) {
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS) *index = d->index;
    return r;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned length) {
    return text(d, "name", name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned length) {
    return text(d, "uuid", uuid, length);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    return text(d, "bus_id", pci->busId, sizeof pci->busId);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
    return field_u32(d, "power_mw", mw);
}

#ifndef FAKE_NVML_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    return field(d, "energy_mj", mj);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r;
    if ((r = field(d, "mem_total", &m->total)) != NVML_SUCCESS) return r;
    if ((r = field(d, "mem_used", &m->used)) != NVML_SUCCESS) return r;
    if ((r = field(d, "mem_free", &m->free)) != NVML_SUCCESS) return r;
    if (field(d, "mem_reserved", &m->reserved) != NVML_SUCCESS) m->reserved = 0;
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw) {
    return field_u32(d, "power_limit_mw", mw);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    if (!u) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = field_u32(d, "util_gpu", &u->gpu);
    return r != NVML_SUCCESS ? r : field_u32(d, "util_mem", &u->memory);
}

/* NVML_TEMPERATURE_GPU is sensor 0, the only one. */
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *c) {
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    return field_u32(d, "temp", c);
}

/* NVML_CLOCK_GRAPHICS 0, NVML_CLOCK_SM 1, NVML_CLOCK_MEM 2. */
nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    switch (type) {
    case 1: return field_u32(d, "sm_clock", mhz);
    case 2: return field_u32(d, "mem_clock", mhz);
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
}

nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t d, unsigned fan, unsigned *pct) {
    if (fan != 0) return NVML_ERROR_INVALID_ARGUMENT;
    return field_u32(d, "fan", pct);
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *r) {
    return field(d, "throttle", r);
}

/* NVML_PERF_POLICY_POWER 0, NVML_PERF_POLICY_THERMAL 1. */
nvmlReturn_t nvmlDeviceGetViolationStatus(nvmlDevice_t d, int policy, nvmlViolationTime_t *t) {
    if (!t) return NVML_ERROR_INVALID_ARGUMENT;
    t->referenceTime = (unsigned long long)time(NULL) * 1000000ULL;
    switch (policy) {
    case 0: return field(d, "power_violation_ns", &t->violationTime);
    case 1: return field(d, "thermal_violation_ns", &t->violationTime);
    default: return NVML_ERROR_NOT_SUPPORTED;
    }
}

/* Corrected 0 / uncorrected 1; volatile counter 0 (aggregate 1 not kept). */
nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, int error, int counter,
                                         unsigned long long *n) {
    if (counter != 0) return NVML_ERROR_NOT_SUPPORTED;
    switch (error) {
    case 0: return field(d, "ecc_sbe", n);
    case 1: return field(d, "ecc_dbe", n);
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t d, unsigned *n) {
    return field_u32(d, "pcie_replay", n);
}

/* NVML_PCIE_UTIL_TX_BYTES 0, NVML_PCIE_UTIL_RX_BYTES 1. */
nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, int counter, unsigned *kbs) {
    switch (counter) {
    case 0: return field_u32(d, "pcie_tx_kbs", kbs);
    case 1: return field_u32(d, "pcie_rx_kbs", kbs);
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
}

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t d, unsigned long long *types) {
    nvmlReturn_t r = check(d);
    if (r == NVML_SUCCESS) *types = EVENT_XID_CRITICAL;
    return r;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    *set = calloc(1, sizeof **set);
    return *set ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    free(set);
    return NVML_SUCCESS;
}

static unsigned long long xid_seq(unsigned index) {
    char key[64];
    unsigned long long v = 0;
    snprintf(key, sizeof key, "gpu%u.xid_seq", index);
    lookup_u64(key, &v);
    return v;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
    nvmlReturn_t r = check(d);
    if (r != NVML_SUCCESS) return r;
    if (!set || (types & ~EVENT_XID_CRITICAL)) return NVML_ERROR_NOT_SUPPORTED;
    set->registered[d->index] |= types;
    /* Events from now on: what happened before registration is not delivered. */
    set->delivered_seq[d->index] = xid_seq(d->index);
    return NVML_SUCCESS;
}

/* Waits up to timeoutms for a new XID on a registered GPU, looking every 10 ms. */
nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeoutms) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned waited = 0;; waited += 10) {
        for (unsigned i = 0; i < gpu_count(); i++) {
            if (!(set->registered[i] & EVENT_XID_CRITICAL)) continue;
            unsigned long long seq = xid_seq(i);
            if (seq == set->delivered_seq[i]) continue;
            set->delivered_seq[i] = seq;
            char key[64];
            unsigned long long xid = 0;
            snprintf(key, sizeof key, "gpu%u.xid", i);
            lookup_u64(key, &xid);
            memset(data, 0, sizeof *data);
            data->device = &devices[i];
            data->eventType = EVENT_XID_CRITICAL;
            data->eventData = xid;
            return NVML_SUCCESS;
        }
        if (waited >= timeoutms) return NVML_ERROR_TIMEOUT;
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
}
