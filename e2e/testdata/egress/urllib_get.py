# GETs each URL through the environment's proxy with urllib; prints the
# status codes, space-separated.
import sys
import urllib.error
import urllib.request

out = []
for u in sys.argv[1:]:
    try:
        out.append(str(urllib.request.urlopen(u, timeout=10).status))
    except urllib.error.HTTPError as e:
        out.append(str(e.code))
    except urllib.error.URLError as e:  # a refused CONNECT
        out.append("tunnel-403" if "403" in str(e.reason) else "URLError")
    except Exception as e:  # connection-level failure
        out.append(type(e).__name__)
print(" ".join(out))
