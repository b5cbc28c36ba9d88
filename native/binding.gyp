{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": [
        "src/addon.c"
      ],
      "cflags": [
        "-O2",
        "-Wall"
      ]
    },
    {
      "target_name": "weft-cni-shim",
      "type": "executable",
      "sources": [
        "cni-shim/shim.c"
      ],
      "cflags": [
        "-O2",
        "-Wall"
      ]
    }
  ]
}
