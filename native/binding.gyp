{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": ["src/addon.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
