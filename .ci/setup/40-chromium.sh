# Headless Chromium and its WebDriver, for the dashboard's browser test
# (tests/suite/dashboard.rs). Debian's packages: the browser and the driver
# come from the same source build, so their versions always match.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver fonts-dejavu-core >/dev/null
fi
