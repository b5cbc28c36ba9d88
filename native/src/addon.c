#include <node_api.h>

/* Placeholder: the udp data path fills this addon in. */
static napi_value Init(napi_env env, napi_value exports) {
  napi_value v;
  napi_create_string_utf8(env, "0", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, exports, "version", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
