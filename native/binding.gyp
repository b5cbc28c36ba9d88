{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": [
        "src/addon.c",
        "src/datapath.c",
        "src/nftlist.c",
        "src/packet.c",
        "src/peers.c"
      ],
      "cflags": [
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-std=gnu11",
        "-pthread"
      ],
      "ldflags": [
        "-pthread"
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
