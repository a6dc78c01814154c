import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "property-tests/**/*.test.ts", "examples/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // the JSON report is what .ci/run counts
    reporters: ["default", ["json", { outputFile: ".test-results/vitest.json" }]]
  }
})
