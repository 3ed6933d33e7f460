# binding.gyp - node-gyp build of the addon (used by `npm install`). It compiles the
# same sources as CMakeLists.txt: every .cpp under native/engine/ (optional backends
# such as backend/cuda/ excepted; native/sources.cjs lists them) plus native/addon/*.cpp.
# SIMD kernels pick their instruction set per function, so no per-file flags are needed.
{
  "targets": [
    {
      "target_name": "cxr_llava",
      "sources": [
        "<!@(node native/sources.cjs engine)",
        "<!@(node native/sources.cjs addon)"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/engine"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "11.0",
        "OTHER_CPLUSPLUSFLAGS": ["-O3"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
      }
    }
  ]
}
