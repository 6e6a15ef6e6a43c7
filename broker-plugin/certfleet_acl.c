/*
 * certfleet_acl: a Mosquitto 2.0 plugin (v5 API) that decides every topic access from the
 * authenticated username, by construction, in time independent of the fleet size.
 *
 * A device's username is its certificate CN `T/D` (use_identity_as_username true, or set by this plugin
 * at CONNECT with plugin_opt_device_login), T and D valid
 * certfleet ids (^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$: no `/ + # $`, no whitespace). Such a client
 * may use (publish, subscribe, receive) only:
 *   - `tenant/T/device/D` and below (not for T = the reserved tenant, certfleet's own canaries);
 *   - its tenant's grants, read from the grants file (`tenant/T/<filter>`, read/write/readwrite);
 *   - with renewal on: publish `certfleet/renew/T/D/request`, receive `certfleet/renew/T/D/response`.
 * A subscription filter must lie entirely under one of those (so `+`/`#` above the device's own
 * prefix are refused). Everything else is denied; a username that is not `T/D` with two valid ids
 * gets nothing (definitive: the dynamic security plugin loaded after this one is never asked).
 *
 * certfleet's admin user (plugin_opt_admin_username, no `/`) gets what the acl_file gave it:
 * readwrite `$CONTROL/dynamic-security/#`, read `tenant/#`, with renewal read
 * `certfleet/renew/+/+/request` and write `certfleet/renew/+/+/response`; anything else about the
 * admin is deferred to the next plugin (the dynamic security plugin that knows its role), and
 * Mosquitto denies what every plugin defers.
 *
 * Options:
 *   plugin_opt_grants_file PATH     required; lines `<tenant> <read|write|readwrite> <filter>`,
 *                                   `#` comments; re-read on every reload (SIGHUP). An unreadable
 *                                   or invalid file stops the start; on reload the previous grants
 *                                   stay in force (logged).
 *   plugin_opt_admin_username NAME  optional.
 *   plugin_opt_renewal_topics true  optional (default false).
 *   plugin_opt_reserved_tenant ID   optional (default certfleet): its devices get no own topics/grants.
 *   plugin_opt_ca_scopes_file PATH  optional (broker-config writes it: `<cafile>.scopes`): binds a
 *                                   certificate's CN to the scope of the CA that signed it (below).
 *
 * CA scope binding (issue 19, tenant-scoped CAs). The cafile trusts every staged, active and
 * retiring CA, tenant-scoped ones included, and a tenant may hold its CA's key ("bring your own
 * CA"): with it, it could sign a certificate whose CN names another tenant's device or certfleet's
 * admin. The scope file lists each trusted CA's certificate after its scope (`scope *` global,
 * `scope <tenant>`). For a client that presented a certificate, the plugin finds the CA of the
 * scope file that signed it (issuer name and key identifier as OpenSSL's chain building matches
 * them, then the signature verified with that CA's key: the AKI alone is attacker-chosen), and:
 *   - a global CA: the username is used as before (any tenant, the admin);
 *   - a tenant CA: only a device username `T/D` with T = that tenant; anything else is denied;
 *   - no CA of the file (a CA the file does not list yet, or the file missing/invalid): denied.
 * Clients without a certificate (password logins on the admin and recovery listeners) are not
 * concerned. The file is re-read on every reload; an unreadable or invalid file leaves an empty
 * set: every certificate client is denied until a valid one is read (fail closed). The decision is
 * cached per certificate (SHA-256 of its DER) until the next reload.
 *
 *   plugin_opt_device_login true    optional (default false; broker-config writes it with the scope map):
 *                                   certificate logins are checked at CONNECT, before Mosquitto hands
 *                                   over a session of the same client id; see "Device login" below.
 *   plugin_opt_provisioning_topics true
 *                                   optional (default false): MQTT provisioning with a claim
 *                                   (factory) certificate on the provisioning listener; see
 *                                   "MQTT provisioning" below.
 *
 * Build: cc -shared -fPIC -O2 -Wall -o certfleet_acl.so certfleet_acl.c -lcrypto
 * (headers: Debian mosquitto-dev + libmosquitto-dev + libssl-dev; Alpine mosquitto-dev + openssl-dev).
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/sha.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MAX_ID 128
#define MAX_FILTER 200
#define MAX_LEVELS 8
#define MAX_GRANTS_PER_TENANT 32
#define MAX_LINE 1024

#define A_READ 1
#define A_WRITE 2

struct grant {
	char *topic; /* tenant/<tenant>/<filter> */
	int access;
};

struct tenant_grants {
	char *tenant;
	struct grant grants[MAX_GRANTS_PER_TENANT];
	int count;
	struct tenant_grants *next;
};

struct grant_table {
	struct tenant_grants **buckets;
	size_t nbuckets;
	size_t tenants;
	size_t grants;
};

static mosquitto_plugin_id_t *plugin_id = NULL;
static char *grants_file = NULL;
static char *admin_username = NULL;
static char *recovery_username = NULL;
static char *reserved_tenant = NULL;
static bool renewal_topics = false;
static bool provisioning_topics = false;
static bool device_login = false;
static struct grant_table *table = NULL;

/* ---- ids and topics ---------------------------------------------------------------------- */

static bool id_char(char c, bool first)
{
	if (isalnum((unsigned char)c)) return true;
	return !first && (c == '.' || c == '_' || c == ':' || c == '-');
}

static bool valid_id(const char *s, size_t len)
{
	if (len == 0 || len > MAX_ID) return false;
	for (size_t i = 0; i < len; i++) {
		if (!id_char(s[i], i == 0)) return false;
	}
	return true;
}

/* `T/D` with two valid ids: copies them out. */
static bool parse_device(const char *username, char *tenant, char *device)
{
	if (!username) return false;
	const char *slash = strchr(username, '/');
	if (!slash) return false;
	size_t tl = (size_t)(slash - username);
	size_t dl = strlen(slash + 1);
	if (!valid_id(username, tl) || !valid_id(slash + 1, dl)) return false;
	memcpy(tenant, username, tl);
	tenant[tl] = '\0';
	memcpy(device, slash + 1, dl);
	device[dl] = '\0';
	return true;
}

/* Next level of a topic/filter: [*p, end) ; advances *p past the separator. false at the end. */
static bool next_level(const char **p, bool *done, const char **start, size_t *len)
{
	if (*done) return false;
	const char *s = *p;
	const char *slash = strchr(s, '/');
	*start = s;
	if (slash) {
		*len = (size_t)(slash - s);
		*p = slash + 1;
	} else {
		*len = strlen(s);
		*done = true;
	}
	return true;
}

static bool level_is(const char *s, size_t len, const char *what)
{
	return strlen(what) == len && memcmp(s, what, len) == 0;
}

/* MQTT matching of a concrete topic against a filter (`+` one level, `#` the rest, incl. the parent). */
static bool topic_matches(const char *filter, const char *topic)
{
	if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
	const char *f = filter, *t = topic;
	bool fdone = false, tdone = false;
	const char *fs, *ts;
	size_t fl, tl;
	for (;;) {
		bool hf = next_level(&f, &fdone, &fs, &fl);
		if (hf && level_is(fs, fl, "#")) return true;
		bool ht = next_level(&t, &tdone, &ts, &tl);
		if (!hf || !ht) return !hf && !ht;
		if (level_is(fs, fl, "+")) continue;
		if (fl != tl || memcmp(fs, ts, fl) != 0) return false;
	}
}

/*
 * true when every topic the subscription filter `sub` matches is matched by `cover` too.
 * A `+` or `#` in `sub` is only covered by a `+`/`#` of `cover` at the same level (or a `#` above).
 */
static bool filter_covers(const char *cover, const char *sub)
{
	if (sub[0] == '$' && cover[0] != '$') return false;
	const char *c = cover, *s = sub;
	bool cdone = false, sdone = false;
	const char *cs, *ss;
	size_t cl, sl;
	for (;;) {
		bool hc = next_level(&c, &cdone, &cs, &cl);
		if (hc && level_is(cs, cl, "#")) return true;
		bool hs = next_level(&s, &sdone, &ss, &sl);
		if (!hc || !hs) return !hc && !hs;
		if (level_is(ss, sl, "#")) return false;
		if (level_is(cs, cl, "+")) continue;
		if (level_is(ss, sl, "+")) return false;
		if (cl != sl || memcmp(cs, ss, cl) != 0) return false;
	}
}

/* A grant filter as certfleet validates it (src/domain/broker-acl.ts assertGrantFilter). */
static bool valid_grant_filter(const char *filter)
{
	size_t n = strlen(filter);
	if (n == 0 || n > MAX_FILTER) return false;
	const char *p = filter;
	bool done = false;
	const char *ls;
	size_t ll;
	int levels = 0;
	while (next_level(&p, &done, &ls, &ll)) {
		levels++;
		if (levels > MAX_LEVELS || ll == 0) return false;
		if (levels == 1) {
			if (ll == 6 && strncasecmp(ls, "device", 6) == 0) return false;
			if (level_is(ls, ll, "+") || level_is(ls, ll, "#")) return false;
		}
		if (level_is(ls, ll, "#")) {
			if (!done) return false;
			continue;
		}
		if (level_is(ls, ll, "+")) continue;
		for (size_t i = 0; i < ll; i++) {
			if (!id_char(ls[i], false)) return false;
		}
	}
	return true;
}

/* ---- the grants table -------------------------------------------------------------------- */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void table_free(struct grant_table *t)
{
	if (!t) return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct tenant_grants *e = t->buckets[i];
		while (e) {
			struct tenant_grants *next = e->next;
			for (int g = 0; g < e->count; g++) free(e->grants[g].topic);
			free(e->tenant);
			free(e);
			e = next;
		}
	}
	free(t->buckets);
	free(t);
}

static struct tenant_grants *table_find(const struct grant_table *t, const char *tenant)
{
	if (!t || t->nbuckets == 0) return NULL;
	for (struct tenant_grants *e = t->buckets[hash(tenant) % t->nbuckets]; e; e = e->next) {
		if (strcmp(e->tenant, tenant) == 0) return e;
	}
	return NULL;
}

static void table_grow(struct grant_table *t)
{
	size_t n = t->nbuckets * 2;
	struct tenant_grants **b = calloc(n, sizeof(*b));
	if (!b) return; /* keep the old size: slower, still correct */
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct tenant_grants *e = t->buckets[i];
		while (e) {
			struct tenant_grants *next = e->next;
			size_t k = hash(e->tenant) % n;
			e->next = b[k];
			b[k] = e;
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

/* Reads and validates the whole file; NULL (and a log line) when it cannot be used. */
static struct grant_table *load_grants(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: cannot open the grants file %s: %s", path, strerror(errno));
		return NULL;
	}
	struct grant_table *t = calloc(1, sizeof(*t));
	if (!t) {
		fclose(f);
		return NULL;
	}
	t->nbuckets = 64;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		fclose(f);
		return NULL;
	}
	char line[MAX_LINE + 2];
	int lineno = 0;
	const char *why = NULL;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
		else if (!feof(f)) { why = "line too long"; break; }
		if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
		if (n == 0 || line[0] == '#') continue;
		char *tenant = line;
		char *sp1 = strchr(tenant, ' ');
		if (!sp1) { why = "expected <tenant> <access> <filter>"; break; }
		*sp1 = '\0';
		char *access = sp1 + 1;
		char *sp2 = strchr(access, ' ');
		if (!sp2) { why = "expected <tenant> <access> <filter>"; break; }
		*sp2 = '\0';
		char *filter = sp2 + 1;
		if (!valid_id(tenant, strlen(tenant))) { why = "invalid tenant id"; break; }
		int bits;
		if (strcmp(access, "read") == 0) bits = A_READ;
		else if (strcmp(access, "write") == 0) bits = A_WRITE;
		else if (strcmp(access, "readwrite") == 0) bits = A_READ | A_WRITE;
		else { why = "access must be read, write or readwrite"; break; }
		if (!valid_grant_filter(filter)) { why = "invalid grant filter"; break; }
		struct tenant_grants *e = table_find(t, tenant);
		if (!e) {
			e = calloc(1, sizeof(*e));
			if (!e || !(e->tenant = strdup(tenant))) { free(e); why = "out of memory"; break; }
			size_t k = hash(tenant) % t->nbuckets;
			e->next = t->buckets[k];
			t->buckets[k] = e;
			t->tenants++;
			if (t->tenants > t->nbuckets) table_grow(t);
		}
		if (e->count >= MAX_GRANTS_PER_TENANT) { why = "more than 32 grants for one tenant"; break; }
		size_t len = strlen("tenant/") + strlen(tenant) + 1 + strlen(filter) + 1;
		char *topic = malloc(len);
		if (!topic) { why = "out of memory"; break; }
		snprintf(topic, len, "tenant/%s/%s", tenant, filter);
		e->grants[e->count].topic = topic;
		e->grants[e->count].access = bits;
		e->count++;
		t->grants++;
	}
	if (!why && ferror(f)) why = strerror(errno);
	fclose(f);
	if (why) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: grants file %s, line %d: %s", path, lineno, why);
		table_free(t);
		return NULL;
	}
	return t;
}

/* ---- the decision ------------------------------------------------------------------------ */

/* May `topic` (a concrete topic, or a filter when subscribing) be used under `cover` with this access? */
static bool covered(const char *cover, const char *topic, int access)
{
	if (access == MOSQ_ACL_SUBSCRIBE || access == MOSQ_ACL_UNSUBSCRIBE) return filter_covers(cover, topic);
	return topic_matches(cover, topic);
}

/* `$share/<group>/<filter>`: the filter (NULL when malformed). Other topics as they are. */
static const char *strip_share(const char *topic)
{
	if (strncmp(topic, "$share/", 7) != 0) return topic;
	const char *group = topic + 7;
	const char *slash = strchr(group, '/');
	if (!slash || slash == group) return NULL;
	for (const char *c = group; c < slash; c++) {
		if (*c == '+' || *c == '#') return NULL;
	}
	return slash + 1;
}

static int device_check(const char *tenant, const char *device, const char *topic, int access)
{
	/* read covers receive and subscribe; write covers publish */
	int need = (access == MOSQ_ACL_WRITE) ? A_WRITE : A_READ;
	char own[2 * MAX_ID + 32];
	if (!reserved_tenant || strcmp(tenant, reserved_tenant) != 0) {
		snprintf(own, sizeof(own), "tenant/%s/device/%s/#", tenant, device);
		if (covered(own, topic, access)) return MOSQ_ERR_SUCCESS;
		const struct tenant_grants *e = table_find(table, tenant);
		if (e) {
			for (int i = 0; i < e->count; i++) {
				if ((e->grants[i].access & need) && covered(e->grants[i].topic, topic, access)) return MOSQ_ERR_SUCCESS;
			}
		}
	}
	if (renewal_topics) {
		snprintf(own, sizeof(own), "certfleet/renew/%s/%s/%s", tenant, device, need == A_WRITE ? "request" : "response");
		if (covered(own, topic, access)) return MOSQ_ERR_SUCCESS;
		/* the server's renewal advice for this device (retained), read only */
		snprintf(own, sizeof(own), "certfleet/renew/%s/%s/advice", tenant, device);
		if (need == A_READ && covered(own, topic, access)) return MOSQ_ERR_SUCCESS;
	}
	return MOSQ_ERR_ACL_DENIED;
}

static int admin_check(const char *topic, int access)
{
	int need = (access == MOSQ_ACL_WRITE) ? A_WRITE : A_READ;
	if (covered("$CONTROL/dynamic-security/#", topic, access)) return MOSQ_ERR_SUCCESS;
	if (need == A_READ && covered("tenant/#", topic, access)) return MOSQ_ERR_SUCCESS;
	if (renewal_topics) {
		if (need == A_READ && covered("certfleet/renew/+/+/request", topic, access)) return MOSQ_ERR_SUCCESS;
		if (need == A_WRITE && covered("certfleet/renew/+/+/response", topic, access)) return MOSQ_ERR_SUCCESS;
		if (need == A_WRITE && covered("certfleet/renew/+/+/advice", topic, access)) return MOSQ_ERR_SUCCESS;
		if (recovery_username) {
			if (need == A_READ && covered("certfleet/recover/request", topic, access)) return MOSQ_ERR_SUCCESS;
			if (need == A_WRITE && covered("certfleet/recover/response/+", topic, access)) return MOSQ_ERR_SUCCESS;
		}
	}
	/* Not ours to refuse: the dynamic security plugin knows the admin's role (Mosquitto denies
	 * what every plugin defers). */
	return MOSQ_ERR_PLUGIN_DEFER;
}

/* ---- CA scope binding (see the header comment) -------------------------------------------- */

#define MAX_SCOPES_FILE (16 * 1024 * 1024)
#define SCOPE_CACHE_SIZE 4096 /* a power of two */

struct ca_scope {
	X509 *ca;
	char *tenant; /* NULL: the global scope */
};

struct ca_scope_set {
	struct ca_scope *v;
	size_t n;
	size_t tenant_scoped;
};

/* The decision for one certificate, until the next reload (generation). */
#define SCOPE_UNKNOWN (-1) /* signed by no CA of the set: denied */
#define SCOPE_GLOBAL (-2)
struct scope_cache_entry {
	unsigned char fp[32];
	unsigned gen;
	int scope; /* SCOPE_UNKNOWN, SCOPE_GLOBAL or an index of the set (a tenant CA) */
};

static char *ca_scopes_file = NULL; /* NULL: binding off (a configuration written before it) */
static struct ca_scope_set *scope_set = NULL;
static unsigned scope_gen = 1;
static struct scope_cache_entry *scope_cache = NULL;

static void scope_set_free(struct ca_scope_set *s)
{
	if (!s) return;
	for (size_t i = 0; i < s->n; i++) {
		X509_free(s->v[i].ca);
		free(s->v[i].tenant);
	}
	free(s->v);
	free(s);
}

/* The whole file in memory (NUL-terminated), NULL with `why` set. */
static char *read_small_file(const char *path, const char **why)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		*why = strerror(errno);
		return NULL;
	}
	long size = (fseek(f, 0, SEEK_END) == 0) ? ftell(f) : -1;
	if (size < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); *why = "cannot size the file"; return NULL; }
	if (size > MAX_SCOPES_FILE) { fclose(f); *why = "file too large"; return NULL; }
	char *buf = malloc((size_t)size + 1);
	if (!buf) { fclose(f); *why = "out of memory"; return NULL; }
	size_t n = fread(buf, 1, (size_t)size, f);
	bool err = ferror(f) != 0 || n != (size_t)size;
	fclose(f);
	if (err) { free(buf); *why = "read error"; return NULL; }
	buf[n] = '\0';
	return buf;
}

/*
 * `scope <* | tenant>` lines, each followed by one PEM CERTIFICATE (the CA); `#` comments and
 * empty lines. NULL (and `why`) when anything is off: the caller then keeps an empty set.
 */
static struct ca_scope_set *load_ca_scopes(const char *path, const char **why)
{
	char *buf = read_small_file(path, why);
	if (!buf) return NULL;
	struct ca_scope_set *s = calloc(1, sizeof(*s));
	if (!s) { free(buf); *why = "out of memory"; return NULL; }
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	char *pending = NULL; /* the scope line waiting for its certificate; "*" = global */
	bool have_pending = false;
	char *p = buf;
	*why = NULL;
	while (*p && !*why) {
		char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		if (len > 0 && p[len - 1] == '\r') len--;
		if (len == 0 || p[0] == '#') {
			/* nothing */
		} else if (len > 6 && strncmp(p, "scope ", 6) == 0) {
			if (have_pending) { *why = "a scope line without its certificate"; break; }
			size_t tl = len - 6;
			if (tl == 1 && p[6] == '*') pending = NULL;
			else if (valid_id(p + 6, tl)) {
				pending = strndup(p + 6, tl);
				if (!pending) { *why = "out of memory"; break; }
			} else { *why = "invalid scope (expected * or a tenant id)"; break; }
			have_pending = true;
		} else if (len == strlen(begin) && strncmp(p, begin, len) == 0) {
			if (!have_pending) { *why = "a certificate without a scope line"; break; }
			char *stop = strstr(p, end);
			if (!stop) { *why = "unterminated certificate"; break; }
			stop += strlen(end);
			BIO *bio = BIO_new_mem_buf(p, (int)(stop - p));
			X509 *ca = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
			BIO_free(bio);
			if (!ca) { *why = "a certificate that does not parse"; break; }
			struct ca_scope *v = realloc(s->v, (s->n + 1) * sizeof(*v));
			if (!v) { X509_free(ca); *why = "out of memory"; break; }
			s->v = v;
			s->v[s->n].ca = ca;
			s->v[s->n].tenant = pending;
			if (pending) s->tenant_scoped++;
			s->n++;
			pending = NULL;
			have_pending = false;
			eol = strchr(stop, '\n');
		} else {
			*why = "unexpected line (expected `scope ...` or a certificate)";
			break;
		}
		p = eol ? eol + 1 : p + strlen(p);
	}
	if (!*why && have_pending) *why = "a scope line without its certificate";
	free(pending);
	free(buf);
	if (*why) {
		scope_set_free(s);
		return NULL;
	}
	return s;
}

/* Reads the scope file; on failure the set is EMPTY (every certificate client denied), never the previous one. */
static void reload_ca_scopes(const char *when)
{
	if (!ca_scopes_file) return;
	const char *why = NULL;
	struct ca_scope_set *s = load_ca_scopes(ca_scopes_file, &why);
	scope_set_free(scope_set);
	scope_gen++;
	if (!s) {
		scope_set = calloc(1, sizeof(*scope_set)); /* NULL too means empty */
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: %s: the CA scope map %s could not be used (%s): no client with a certificate gets any topic until it can (fail closed)", when, ca_scopes_file, why ? why : "unknown");
		return;
	}
	scope_set = s;
	mosquitto_log_printf(MOSQ_LOG_INFO, "certfleet_acl: %s: %zu CA scope(s) from %s, %zu of them tenant-scoped", when, s->n, ca_scopes_file, s->tenant_scoped);
}

/* Which CA of the set signed `cert`: SCOPE_GLOBAL, a tenant CA's index, or SCOPE_UNKNOWN. */
static int issuing_scope(X509 *cert)
{
	int found = SCOPE_UNKNOWN;
	bool ambiguous = false;
	if (!scope_set) return SCOPE_UNKNOWN;
	for (size_t i = 0; i < scope_set->n; i++) {
		X509 *ca = scope_set->v[i].ca;
		/* subject = issuer name, AKI = SKI when present, keyCertSign: OpenSSL's own issuer match */
		if (X509_check_issued(ca, cert) != X509_V_OK) continue;
		/* ...then the signature: only the CA's key makes it (a CN, an issuer name, an AKI are the signer's choice) */
		EVP_PKEY *key = X509_get0_pubkey(ca);
		if (!key || X509_verify(cert, key) != 1) continue;
		if (!scope_set->v[i].tenant) return SCOPE_GLOBAL; /* a global CA holds this key */
		if (found == SCOPE_UNKNOWN) found = (int)i;
		else if (strcmp(scope_set->v[found].tenant, scope_set->v[i].tenant) != 0) ambiguous = true;
	}
	/* One key in two tenants' CAs: whose device it signed cannot be told; denied. */
	return ambiguous ? SCOPE_UNKNOWN : found;
}

/* The scope of the client's certificate, cached by its SHA-256 until the next reload. */
static int certificate_scope(X509 *cert)
{
	unsigned char fp[32];
	unsigned int len = 0;
	if (X509_digest(cert, EVP_sha256(), fp, &len) != 1 || len != sizeof(fp)) return issuing_scope(cert);
	if (!scope_cache) scope_cache = calloc(SCOPE_CACHE_SIZE, sizeof(*scope_cache));
	if (!scope_cache) return issuing_scope(cert);
	struct scope_cache_entry *e = &scope_cache[((size_t)fp[0] << 8 | fp[1]) & (SCOPE_CACHE_SIZE - 1)];
	if (e->gen == scope_gen && memcmp(e->fp, fp, sizeof(fp)) == 0) return e->scope;
	int scope = issuing_scope(cert);
	memcpy(e->fp, fp, sizeof(fp));
	e->gen = scope_gen;
	e->scope = scope;
	return scope;
}

/*
 * May this client act under this username at all? Only certificate clients are bound: a global
 * CA's certificate keeps any username, a tenant CA's only `T/D` of its own tenant, a certificate of
 * no listed CA nothing. MOSQ_ERR_SUCCESS: go on with the usual decision; else denied.
 */
static int ca_scope_check(struct mosquitto *client, const char *username)
{
	if (!ca_scopes_file) return MOSQ_ERR_SUCCESS;
	X509 *cert = mosquitto_client_certificate(client);
	if (!cert) return MOSQ_ERR_SUCCESS; /* a password login (admin, recovery listener) */
	int scope = certificate_scope(cert);
	X509_free(cert);
	if (scope == SCOPE_GLOBAL) return MOSQ_ERR_SUCCESS;
	if (scope < 0) return MOSQ_ERR_ACL_DENIED;
	char tenant[MAX_ID + 1], device[MAX_ID + 1];
	if (!parse_device(username, tenant, device)) return MOSQ_ERR_ACL_DENIED; /* the admin's or recovery's name: not for a tenant CA */
	return strcmp(tenant, scope_set->v[scope].tenant) == 0 ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

/* ---- MQTT provisioning with a claim certificate (issue 21) -----------------------------------
 * Kept apart from the device rules above (its own functions; the device code is unchanged except
 * for one call in on_acl_check and the options), so that changes to the device rules merge cleanly.
 *
 * A claim certificate is issued by a manufacturer's CA, not by certfleet: its CN is chosen by the
 * manufacturer and may equal a device CN `T/D` or another manufacturer's CN. So a claim client is
 * never identified by its CN: the provisioning listener (broker-config --provisioning-port) trusts
 * only the tenants' claim CAs (its capath), requires a client certificate, does NOT use the
 * identity as username, and uses the username as client id. The client must log in with the
 * username `certfleet-claim:<sha256 hex of its certificate's DER>`; the basic-auth callback below
 * recomputes that digest from the certificate the TLS handshake verified and refuses any other
 * username (so no claim client can take a device's client id or another claim client's). It may
 * then use only
 *   publish  certfleet/provision/<its digest>/request
 *   receive  certfleet/provision/<its digest>/response   (subscribe: that exact topic, also via $share)
 * and nothing else. certfleet's admin reads certfleet/provision/+/request and answers on
 * certfleet/provision/+/response; the request is signed with the claim key too, and certfleet
 * checks that the topic's digest is the certificate the request carries.
 * The basic-auth callback is only reached by listeners that do not take the identity as username
 * (Mosquitto 2.0 checks no password there): the admin and recovery listeners (no certificate:
 * deferred to the dynamic security plugin) and the provisioning listener (a certificate).
 */

#define CLAIM_USERNAME_PREFIX "certfleet-claim:"
#define PROVISION_ROOT "certfleet/provision"
#define DIGEST_HEX (2 * SHA256_DIGEST_LENGTH)

/* The SHA-256 (lower-case hex) of the client's TLS certificate (DER); false without one. */
static bool claim_certificate_digest(const struct mosquitto *client, char out[DIGEST_HEX + 1])
{
	X509 *cert = mosquitto_client_certificate(client);
	if (!cert) return false;
	unsigned char *der = NULL;
	int len = i2d_X509(cert, &der);
	X509_free(cert);
	if (len <= 0 || !der) return false;
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256(der, (size_t)len, md);
	OPENSSL_free(der);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[DIGEST_HEX] = '\0';
	return true;
}

static bool is_claim_username(const char *username)
{
	return username && strncmp(username, CLAIM_USERNAME_PREFIX, strlen(CLAIM_USERNAME_PREFIX)) == 0;
}

/* true when `username` is exactly certfleet-claim:<digest of the client's own certificate>; the digest is copied out. */
static bool claim_identity(const struct mosquitto *client, const char *username, char digest[DIGEST_HEX + 1])
{
	if (!is_claim_username(username)) return false;
	if (!claim_certificate_digest(client, digest)) return false;
	return strcmp(username + strlen(CLAIM_USERNAME_PREFIX), digest) == 0;
}

/* A claim client's topics: its own request (publish) and its own answer (receive, subscribe). */
static int claim_check(const struct mosquitto *client, const char *username, const char *topic, int access)
{
	char digest[DIGEST_HEX + 1];
	if (!claim_identity(client, username, digest)) return MOSQ_ERR_ACL_DENIED;
	char own[sizeof(PROVISION_ROOT) + DIGEST_HEX + 16];
	snprintf(own, sizeof(own), "%s/%s/%s", PROVISION_ROOT, digest, access == MOSQ_ACL_WRITE ? "request" : "response");
	return covered(own, topic, access) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

/* certfleet's admin: every claim client's request, and the answers. */
static bool admin_provisioning(const char *topic, int access)
{
	if (!provisioning_topics) return false;
	if (access == MOSQ_ACL_WRITE) return covered(PROVISION_ROOT "/+/response", topic, access);
	return covered(PROVISION_ROOT "/+/request", topic, access);
}

/* ---- Device login at CONNECT (plugin_opt_device_login) ----------------------------------------
 * Mosquitto 2.0 calls no plugin at CONNECT on a listener with use_identity_as_username: the CN becomes
 * the username, and the session of the same client id is taken over (its live connection closed)
 * before any ACL check. So a certificate the scope binding would give nothing (a tenant CA's
 * certificate naming another tenant's device) could still end that device's connection. With this
 * option the device listener does NOT take the identity as username (broker-config writes
 * use_identity_as_username false there), so Mosquitto asks the basic-auth callback below, which runs
 * before the takeover, and it:
 *   - refuses a certificate of no CA of the scope map, and a tenant CA's certificate whose CN is not
 *     `T/D` of its own tenant (the same rule as ca_scope_check);
 *   - refuses a client id that names a device (it contains `/`) other than the certificate's own: it
 *     must be the CN `T/D` or begin with `T/D/` (client ids without `/` stay the device's choice);
 *   - then sets the username to the CN (whatever username the client sent), as use_identity_as_username did.
 * Clients without a certificate (admin, recovery listeners) are deferred to the dynamic security
 * plugin; claim clients (provisioning listener) keep their own login below.
 */

/* The certificate's first CN, as Mosquitto's use_identity_as_username takes it; false without one or with an embedded NUL. */
static bool certificate_cn(X509 *cert, char *out, size_t size)
{
	X509_NAME *name = X509_get_subject_name(cert);
	if (!name) return false;
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i < 0) return false;
	ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	if (!data) return false;
	int len = ASN1_STRING_length(data);
	const unsigned char *bytes = ASN1_STRING_get0_data(data);
	if (len <= 0 || (size_t)len >= size || memchr(bytes, '\0', (size_t)len)) return false;
	memcpy(out, bytes, (size_t)len);
	out[len] = '\0';
	return true;
}

/* A client id naming a device (with `/`) must be the CN or below it (`CN/...`). */
static bool client_id_allowed(const char *client_id, const char *cn)
{
	if (!client_id || !strchr(client_id, '/')) return true;
	size_t n = strlen(cn);
	return strncmp(client_id, cn, n) == 0 && (client_id[n] == '\0' || client_id[n] == '/');
}

static int device_login_check(struct mosquitto *client, X509 *cert)
{
	char cn[2 * MAX_ID + 2];
	const char *id = mosquitto_client_id(client);
	if (!certificate_cn(cert, cn, sizeof(cn))) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "certfleet_acl: certificate login refused (client id %s): no usable CN", id ? id : "");
		return MOSQ_ERR_AUTH;
	}
	if (ca_scope_check(client, cn) != MOSQ_ERR_SUCCESS) {
		mosquitto_log_printf(MOSQ_LOG_WARNING, "certfleet_acl: certificate login refused: CN %s (client id %s) is outside the scope of the CA that signed it (a tenant CA signs only its own tenant's devices); no session was touched", cn, id ? id : "");
		return MOSQ_ERR_AUTH;
	}
	if (!client_id_allowed(id, cn)) {
		mosquitto_log_printf(MOSQ_LOG_WARNING, "certfleet_acl: certificate login refused: client id %s names another device than the certificate's CN %s (use the CN or CN/<suffix>); no session was touched", id, cn);
		return MOSQ_ERR_AUTH;
	}
	if (mosquitto_set_username(client, cn) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_AUTH;
	return MOSQ_ERR_SUCCESS;
}

/* Logins with a certificate: device logins (plugin_opt_device_login) and claim logins on the provisioning listener. */
static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	if (!ed || !ed->client) return MOSQ_ERR_PLUGIN_DEFER;
	X509 *cert = mosquitto_client_certificate(ed->client);
	/* No client certificate: a password login (admin, recovery) for the dynamic security plugin ... */
	if (!cert) return is_claim_username(ed->username) ? MOSQ_ERR_AUTH : MOSQ_ERR_PLUGIN_DEFER; /* ... but never a claim username */
	/* A certificate of a device CA of the scope map is a device login, whatever username it sent. */
	if (device_login && certificate_scope(cert) != SCOPE_UNKNOWN) {
		int rc = device_login_check(ed->client, cert);
		X509_free(cert);
		return rc;
	}
	X509_free(cert);
	/* The provisioning listener: the username must name the certificate the client presented. */
	char digest[DIGEST_HEX + 1];
	if (provisioning_topics && claim_certificate_digest(ed->client, digest)) {
		if (ed->username && is_claim_username(ed->username) && strcmp(ed->username + strlen(CLAIM_USERNAME_PREFIX), digest) == 0) return MOSQ_ERR_SUCCESS;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "certfleet_acl: provisioning login refused: the username must be %s%s (the SHA-256 of the client certificate)", CLAIM_USERNAME_PREFIX, digest);
		return MOSQ_ERR_AUTH;
	}
	mosquitto_log_printf(MOSQ_LOG_WARNING, "certfleet_acl: certificate login refused: its certificate was signed by no CA of the scope map");
	return MOSQ_ERR_AUTH;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	if (!ed || !ed->client || !ed->topic) return MOSQ_ERR_ACL_DENIED;
	const char *username = mosquitto_client_username(ed->client);
	if (!username) return MOSQ_ERR_ACL_DENIED;
	const char *topic = ed->topic;
	if (ed->access == MOSQ_ACL_SUBSCRIBE || ed->access == MOSQ_ACL_UNSUBSCRIBE) {
		topic = strip_share(topic);
		if (!topic) return MOSQ_ERR_ACL_DENIED;
	}
	/* MQTT provisioning: a claim client (its own functions above), known by its certificate's SHA-256, not
	 * by a CA of the scope map (its CA is a manufacturer's); without the option, denied below. */
	if (provisioning_topics && is_claim_username(username)) return claim_check(ed->client, username, topic, ed->access);
	/* A certificate's CN counts only within the scope of the CA that signed it (CA scope binding). */
	if (ca_scope_check(ed->client, username) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_ACL_DENIED;
	if (admin_username && strcmp(username, admin_username) == 0) {
		if (admin_provisioning(topic, ed->access)) return MOSQ_ERR_SUCCESS;
		return admin_check(topic, ed->access);
	}
	/* The shared recovery login (expired devices, signed requests): its request topic and the answers, nothing else. */
	if (recovery_username && renewal_topics && strcmp(username, recovery_username) == 0) {
		if (ed->access == MOSQ_ACL_WRITE) return covered("certfleet/recover/request", topic, ed->access) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
		return covered("certfleet/recover/response/+", topic, ed->access) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	char tenant[MAX_ID + 1], device[MAX_ID + 1];
	if (!parse_device(username, tenant, device)) return MOSQ_ERR_ACL_DENIED;
	return device_check(tenant, device, topic, ed->access);
}

static void reload_grants(const char *why)
{
	struct grant_table *t = load_grants(grants_file);
	if (!t) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: %s: the grants file could not be used; the previous grants stay in force", why);
		return;
	}
	table_free(table);
	table = t;
	mosquitto_log_printf(MOSQ_LOG_INFO, "certfleet_acl: %s: %zu grant(s) of %zu tenant(s) from %s", why, t->grants, t->tenants, grants_file);
}

static int on_reload(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	reload_grants("reload");
	reload_ca_scopes("reload");
	return MOSQ_ERR_SUCCESS;
}

/* ---- plugin entry points ----------------------------------------------------------------- */

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) return 5;
	}
	return -1;
}

static void free_options(void)
{
	free(grants_file);
	free(admin_username);
	free(reserved_tenant);
	free(recovery_username);
	free(ca_scopes_file);
	grants_file = admin_username = reserved_tenant = recovery_username = ca_scopes_file = NULL;
	renewal_topics = false;
	provisioning_topics = false;
	device_login = false;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	free_options();
	for (int i = 0; i < opt_count; i++) {
		const char *k = opts[i].key, *v = opts[i].value;
		if (!k || !v) continue;
		if (strcmp(k, "grants_file") == 0) grants_file = strdup(v);
		else if (strcmp(k, "admin_username") == 0) admin_username = strdup(v);
		else if (strcmp(k, "reserved_tenant") == 0) reserved_tenant = strdup(v);
		else if (strcmp(k, "recovery_username") == 0) recovery_username = strdup(v);
		else if (strcmp(k, "renewal_topics") == 0) renewal_topics = strcmp(v, "true") == 0;
		else if (strcmp(k, "ca_scopes_file") == 0) ca_scopes_file = strdup(v);
		else if (strcmp(k, "provisioning_topics") == 0) provisioning_topics = strcmp(v, "true") == 0;
		else if (strcmp(k, "device_login") == 0) device_login = strcmp(v, "true") == 0;
		else mosquitto_log_printf(MOSQ_LOG_WARNING, "certfleet_acl: unknown option plugin_opt_%s ignored", k);
	}
	if (!reserved_tenant) reserved_tenant = strdup("certfleet");
	if (!grants_file) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: plugin_opt_grants_file is required");
		free_options();
		return MOSQ_ERR_INVAL;
	}
	if (admin_username && (admin_username[0] == '\0' || strchr(admin_username, '/'))) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: plugin_opt_admin_username must be non-empty and without \"/\"");
		free_options();
		return MOSQ_ERR_INVAL;
	}
	if (device_login && !ca_scopes_file) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: plugin_opt_device_login needs plugin_opt_ca_scopes_file (the CAs whose certificates may log in)");
		free_options();
		return MOSQ_ERR_INVAL;
	}
	struct grant_table *t = load_grants(grants_file);
	if (!t) {
		free_options();
		return MOSQ_ERR_INVAL;
	}
	table_free(table);
	table = t;
	if (ca_scopes_file) reload_ca_scopes("start");
	else mosquitto_log_printf(MOSQ_LOG_WARNING, "certfleet_acl: no plugin_opt_ca_scopes_file: a tenant-scoped CA in the cafile could sign for any tenant (run certfleet broker-config again)");
	plugin_id = identifier;
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL, NULL);
	/* MQTT provisioning: the claim clients' login (see "MQTT provisioning"). */
	if (rc == MOSQ_ERR_SUCCESS && (provisioning_topics || device_login)) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "certfleet_acl: cannot register its callbacks (%d)", rc);
		return rc;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "certfleet_acl: devices confined to tenant/<T>/device/<D>/# and their tenant's grants; %zu grant(s) of %zu tenant(s) from %s%s%s%s%s",
		t->grants, t->tenants, grants_file, renewal_topics ? "; renewal topics on" : "", provisioning_topics ? "; provisioning topics on" : "", admin_username ? "; admin " : "", admin_username ? admin_username : "");
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	if (plugin_id) {
		mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
		mosquitto_callback_unregister(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL);
		if (provisioning_topics || device_login) mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	}
	table_free(table);
	table = NULL;
	scope_set_free(scope_set);
	scope_set = NULL;
	free(scope_cache);
	scope_cache = NULL;
	free_options();
	return MOSQ_ERR_SUCCESS;
}
