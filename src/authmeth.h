/*
 * MQTT 5.0 enhanced authentication (5.0 section 4.12): the methods a
 * CONNECT may name in its Authentication Method, and the per-connection
 * exchange that runs one of them. auth.h checks a username and password;
 * a method here runs a challenge and response of any number of rounds
 * over CONNECT, AUTH and CONNACK, and says who the client is at the end.
 *
 * Caveats
 * - A method runs on the broker's one thread and must answer at once: a
 *   method that asks a slow service needs an asynchronous step first.
 * - Methods are compiled in and found by name (authmeth_find); a name the
 *   table lacks is refused with CONNACK 0x8C by the protocol layer. A
 *   production build has no method at all today; builds configured with
 *   --enable-fault-injection carry "cairn-test-challenge", a test method.
 * - Authentication Data is binary and not NUL-terminated.
 */
#ifndef CAIRN_AUTHMETH_H
#define CAIRN_AUTHMETH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

/* What one step of a method decided. */
enum authmeth_result {
	AUTHMETH_CONTINUE, /* send out->data in AUTH 0x18 and wait for the client's AUTH */
	AUTHMETH_SUCCESS,  /* authenticated; out->data (may be empty) goes in the CONNACK
			    * or, when re-authenticating, in AUTH 0x00 */
	AUTHMETH_FAILURE,  /* refused with out->reason (a CONNACK reason code >= 0x80) */
};

/* What a step hands back. The caller zeroes it before the step and frees
 * data and username after it (both malloc'd, either may stay NULL). */
struct authmeth_out {
	uint8_t *data; /* Authentication Data to send, or NULL for none */
	size_t data_len;
	char *username; /* on success: the authenticated username (NUL-terminated
			 * UTF-8), or NULL for none */
	uint8_t reason; /* on failure: 0x86 bad credentials, 0x87 not authorized, ... */
};

/* What a method may know about the client, borrowed for the step. */
struct authmeth_ctx {
	const struct config *cfg; /* the broker's configuration */
	const char *username;     /* the CONNECT's User Name (NUL-terminated), or NULL */
	bool reauth;              /* an AUTH 0x19 started this exchange */
};

/*
 * One enhanced authentication method. step is called first with *state
 * NULL and the CONNECT's (or the AUTH 0x19's) Authentication Data, then
 * once per AUTH 0x18 the client answers, until it returns SUCCESS or
 * FAILURE. data is NULL when the packet had no Authentication Data. The
 * method may set *state to anything it needs between steps; end releases
 * it once the exchange is over (or the connection closes mid-way), and is
 * called with NULL too.
 */
struct authmeth {
	const char *name; /* the Authentication Method string */
	enum authmeth_result (*step)(void **state, const struct authmeth_ctx *ctx,
				     const uint8_t *data, size_t data_len,
				     struct authmeth_out *out);
	void (*end)(void *state);
};

/* The method named name (len bytes, not NUL-terminated), or NULL when
 * none compiled into this broker has that name. */
const struct authmeth *authmeth_find(const char *name, size_t len);

/*
 * One connection's enhanced authentication: the method its CONNECT named,
 * the exchange in progress, and what re-authentication needs. Owned by
 * the connection (conn_set_auth) and freed when it is freed.
 */
struct authmeth_session {
	const struct authmeth *m;
	void *state;         /* the method's, during an exchange */
	bool in_progress;    /* an exchange waits for the client's AUTH 0x18 */
	bool connected;      /* the CONNACK went out: exchanges now are re-authentication */
	char *username;      /* the CONNECT's User Name, or NULL */
	char *auth_user;     /* the username the first exchange authenticated, or NULL */
	uint8_t *connect;    /* the CONNECT packet's body, kept until the CONNACK */
	size_t connect_len;  /* its length */
	uint8_t connect_hdr; /* its fixed header's first byte */
	uint32_t max_packet; /* the client's Maximum Packet Size; 0: none */
};

/* A session for method m, with a copy of the CONNECT's username (NULL or
 * username_len bytes). */
struct authmeth_session *authmeth_session_new(const struct authmeth *m, const char *username,
					      size_t username_len);
/* Keep a copy of the CONNECT (hdr, body[0..len)) to finish it later. */
void authmeth_session_keep_connect(struct authmeth_session *s, uint8_t hdr, const uint8_t *body,
				   size_t len);
/* Run one step of s's method; starts an exchange when none is in progress
 * and ends it on SUCCESS or FAILURE. out as for struct authmeth.step. */
enum authmeth_result authmeth_session_step(struct authmeth_session *s, const struct config *cfg,
					   const uint8_t *data, size_t data_len,
					   struct authmeth_out *out);
/* Release out's data and username. */
void authmeth_out_cleanup(struct authmeth_out *out);
/* Release s and everything it holds (void * for conn_set_auth). NULL is
 * allowed. */
void authmeth_session_free(void *s);

#endif
