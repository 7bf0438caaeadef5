/* Checks on the keys of parsed objects; see svckit/json.h. */
#include <string.h>

#include "svckit/json.h"

int svc_json_only_keys(const json_t *obj, const char *const *allowed, const char **unknown) {
    if (unknown) *unknown = NULL;
    if (!json_is_object(obj)) return SVC_EINVAL;
    const char *key;
    json_t *v;
    /* jansson's iteration takes a non-const object but does not change it. */
    json_object_foreach((json_t *)obj, key, v) {
        (void)v;
        const char *const *a = allowed;
        while (a && *a && strcmp(*a, key) != 0) a++;
        if (!a || !*a) {
            if (unknown) *unknown = key;
            return SVC_EINVAL;
        }
    }
    return SVC_OK;
}
