// Polyfills that matrix-js-sdk 43 needs on Node 20. The SDK declares
// Node >= 22 and calls Promise.withResolvers (ES2024, Node 22) in its HTTP
// layer, InteractiveAuth and the sync loop; without it they throw a
// TypeError. Import this module before the SDK.
if (typeof Promise.withResolvers !== "function") {
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    value: function withResolvers() {
      let resolve;
      let reject;
      const promise = new this((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
