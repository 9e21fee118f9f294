export const SDK_NAME = "vexil-web"
/** Kept equal to package.json's version (a unit test checks it). */
export const SDK_VERSION = "0.1.0"
