/*
 * The Redis backend shared by several brokers (cluster mode, vtable version
 * 4; cairn-redis(5) has the keys). Every key of one session shares the hash
 * tag {c:ID} and every key of the message log {L:0}. On one server (or a
 * primary with replicas) a commit is one call of the function
 * cairn_commit, which first checks, per session the batch writes, that this
 * node still holds the session's claim ({c:ID}:own), then runs the
 * session's writes only if it does, and the log's writes always. The
 * function returns the sessions it found claimed elsewhere (fenced), which
 * the core hears of before the commit's done(). Besides the commit link,
 * two connections of their own: one blocks in XREAD on the log, one is
 * subscribed to this incarnation's kicks (a claim elsewhere).
 *
 * On a Redis Cluster (st->rcluster; slots.c routes each command to its
 * slot's master) the same commit is one cairn_commit per master, the
 * node's mark is copied to every master ({m:T}:marks), an inbound QoS 2
 * message carries a marker in the log's slot, and a claim and the janitor
 * each run as a part in the session's slot and a part in the log's
 * (rd_rcluster_send, rd_claim_s_cb, rd_rjanitor_start).
 */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

struct rd_part;
static void rd_parts_drop_phase2(struct cairn_store *st);
struct rd_janitor;
static void rd_janitor_free(struct rd_janitor *j);

/* Entries one XREAD or XRANGE asks for. */
#define RD_LOG_COUNT "512"
/* Message ids of one incarnation: inc << RD_ID_SHIFT onwards. */
#define RD_ID_SHIFT 40

/*
 * The library "cairn", loaded with FUNCTION LOAD REPLACE at cluster_start
 * (each function says what it does). A session's writes run only while its
 * token names this incarnation: the serial after the colon tells this
 * node's connections apart (kicks), while writes staged for a session
 * object this node dropped are filtered here, by generation, before they
 * are sent (a takeover on the same node keeps its writes).
 */
static const char rd_lua[] =
    "#!lua name=cairn\n"
    "local function inc_of(tok)\n"
    "  return tok and string.match(tok, '^(%d+):')\n"
    "end\n"
    "local function retained_value(q, props, payload, ea)\n"
    "  if (props and #props > 0) or (ea and ea ~= 0) then\n"
    "    return q .. ';' .. string.format('%d', ea or 0) .. ';' .. #(props or '') .. ';' ..\n"
    "      (props or '') .. payload\n"
    "  end\n"
    "  return q .. ':' .. payload\n"
    "end\n"
    "-- A will's fields in a session hash; will_ep says which will it is (the\n"
    "-- epoch of the claim of the connection that left it, written with it, or\n"
    "-- set by a claim that takes a will written without it): its once-only\n"
    "-- marker's name, which the node holding that connection uses too.\n"
    "local WILL = {'will_topic', 'will_payload', 'will_qos', 'will_retain', 'will_props',\n"
    "  'will_delay', 'will_at', 'will_ep'}\n"
    "local function drop_will(s) redis.call('HDEL', s, unpack(WILL)) end\n"
    "-- Now in ms by the server's clock (a claim's or a Redis Cluster's will).\n"
    "local function now_ms()\n"
    "  local t = redis.call('TIME')\n"
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "end\n"
    "-- A will's 5.0 properties (as in CONNECT, without the will delay) and when\n"
    "-- it expires if published at now: its Message Expiry Interval counts from\n"
    "-- then, and is taken out of the properties (the entry's x field carries\n"
    "-- it, as a PUBLISH's). Returns props, expires_at (0: never).\n"
    "local function will_expiry(props, now)\n"
    "  local i, n, keep, ea = 1, #props, {}, 0\n"
    "  local function u16(at) return string.byte(props, at) * 256 + string.byte(props, at + 1) "
    "end\n"
    "  while i <= n do\n"
    "    local id, len = string.byte(props, i), nil\n"
    "    if id == 1 then len = 1\n"
    "    elseif id == 2 or id == 24 then len = 4\n"
    "    elseif id == 3 or id == 8 or id == 9 then len = 2 + u16(i + 1)\n"
    "    elseif id == 38 then\n"
    "      local k = u16(i + 1)\n"
    "      len = 4 + k + u16(i + 3 + k)\n"
    "    else return props, 0 end\n"
    "    if i + len > n then return props, 0 end\n"
    "    if id == 2 then\n"
    "      local b1, b2, b3, b4 = string.byte(props, i + 1, i + 4)\n"
    "      ea = now + (((b1 * 256 + b2) * 256 + b3) * 256 + b4) * 1000\n"
    "    else keep[#keep + 1] = string.sub(props, i, i + len) end\n"
    "    i = i + 1 + len\n"
    "  end\n"
    "  return table.concat(keep), ea\n"
    "end\n"
    "-- The will the previous connection of session hash s left, if a takeover\n"
    "-- by another node's claim at epoch makes it due (that connection is gone\n"
    "-- without DISCONNECT or taken over, as on one broker: no Will Delay, a\n"
    "-- session that ended with it, or clean, a clean start: the session ends\n"
    "-- now, so a delayed will still waiting goes now), for the claiming node\n"
    "-- to publish (its ACL decides): {topic, payload, qos, retain, properties,\n"
    "-- '1' and the username or '0' and '', will_ep}, or {} when there is none.\n"
    "-- The will stays, taken\n"
    "-- (will_ep), until the claiming node's commit that publishes it removes it\n"
    "-- (CAIRN.WILLDONE): a node that dies first leaves it to the janitor, or\n"
    "-- to the next claim, which takes it again under the same will_ep.\n"
    "local function take_will(s, epoch, clean)\n"
    "  local f = redis.call('HMGET', s, 'connected', 'will_delay', 'expiry_interval')\n"
    "  if not clean and (f[1] ~= '1' or (tonumber(f[2] or '0') ~= 0 and f[3] ~= '0')) then\n"
    "    return {}\n"
    "  end\n"
    "  local w = redis.call('HMGET', s, 'will_topic', 'will_payload', 'will_qos', 'will_retain',\n"
    "    'will_props', 'username', 'will_ep')\n"
    "  if not w[1] then return {} end\n"
    "  local ep = w[7] or string.format('%d', epoch - 1)\n"
    "  redis.call('HSET', s, 'will_ep', ep)\n"
    "  return {w[1], w[2] or '', w[3] or '0', w[4] or '0', w[5] or '', w[6] and '1' or '0', w[6] "
    "or '',\n"
    "    ep}\n"
    "end\n"
    "-- The session record a claim returns. One whose expiry interval is 0 ended\n"
    "-- with its connection and goes, but for the will taken from it (until the\n"
    "-- claiming node's commit: as parked by the janitor if that node dies).\n"
    "local function claim_record(s, will)\n"
    "  if redis.call('HGET', s, 'expiry_interval') ~= '0' then return redis.call('HGETALL', s) "
    "end\n"
    "  local keep = #will > 0 and redis.call('HMGET', s, unpack(WILL)) or nil\n"
    "  redis.call('DEL', s)\n"
    "  if keep then\n"
    "    local a = {'connected', '1', 'expiry_interval', '0'}\n"
    "    for i, k in ipairs(WILL) do\n"
    "      if keep[i] then a[#a + 1] = k; a[#a + 1] = keep[i] end\n"
    "    end\n"
    "    redis.call('HSET', s, unpack(a))\n"
    "  end\n"
    "  return {}\n"
    "end\n"
    "-- A will a claim found due whose connection is held by another node,\n"
    "-- alive or not (inc): that node may have had a DISCONNECT its commit\n"
    "-- has not stored yet, so the will is not the claim's to publish. It goes\n"
    "-- from session hash s to the record base .. 'tw:' .. inc (its fields and\n"
    "-- will_ep), which that node, told by its kick, removes (publishing the\n"
    "-- will first if it still holds it: no DISCONNECT came), or the janitor\n"
    "-- publishes once that node is gone (both once per will_ep marker).\n"
    "local function defer_will(base, inc, will)\n"
    "  local a = {'will_topic', will[1], 'will_payload', will[2], 'will_qos', will[3],\n"
    "    'will_retain', will[4], 'will_props', will[5], 'will_ep', will[8]}\n"
    "  if will[6] == '1' then a[#a + 1] = 'username'; a[#a + 1] = will[7] end\n"
    "  redis.call('DEL', base .. 'tw:' .. inc)\n"
    "  redis.call('HSET', base .. 'tw:' .. inc, unpack(a))\n"
    "  drop_will(base .. 'session')\n"
    "end\n"
    "-- The name (will_ep) of the will an earlier claim left this node (me)\n"
    "-- for a connection it held (defer_will), its kick maybe not read yet when\n"
    "-- this node claims the session again, or ''.\n"
    "local function left_here(base, me)\n"
    "  return redis.call('HGET', base .. 'tw:' .. me, 'will_ep') or ''\n"
    "end\n"
    "-- A Redis Cluster's inbound QoS 2 markers of one publisher (hash key):\n"
    "-- each field (a packet id) holds the epoch of the claim it was set under.\n"
    "-- Those set up to epoch go (the session they belonged to is gone); one\n"
    "-- set under a later claim (another node's, racing) stays.\n"
    "local function forget_q2(key, epoch)\n"
    "  local h = redis.call('HGETALL', key)\n"
    "  for i = 1, #h, 2 do\n"
    "    if (tonumber(h[i + 1]) or 0) <= epoch then redis.call('HDEL', key, h[i]) end\n"
    "  end\n"
    "end\n"
    "-- A shared group's entry in a session's marks (hash key, field\n"
    "-- 'PART|ID|GROUP'): v 'd', given to the session in a commit, or 't:INC',\n"
    "-- taken over by incarnation INC (share_taken). key .. '_at' orders them by\n"
    "-- the entry's time; those older than cutoff (ms) go, the log trimmed them.\n"
    "local function share_mark(key, f, v, cutoff, ttl)\n"
    "  local at = key .. '_at'\n"
    "  redis.call('HSET', key, f, v)\n"
    "  redis.call('ZADD', at, tonumber(string.match(f, '^%d+|(%d+)%-')) or 0, f)\n"
    "  local old = redis.call('ZRANGEBYSCORE', at, '-inf', cutoff, 'LIMIT', 0, 64)\n"
    "  if #old > 0 then\n"
    "    redis.call('HDEL', key, unpack(old))\n"
    "    redis.call('ZREM', at, unpack(old))\n"
    "  end\n"
    "  redis.call('EXPIRE', key, ttl)\n"
    "  redis.call('EXPIRE', at, ttl)\n"
    "end\n"
    "-- A takeover asks one member's session (keys[1], its marks) about\n"
    "-- entries (args: this incarnation, cutoff, ttl, fields): {stale, the\n"
    "-- indexes of those given to it}; each other one is marked taken by this\n"
    "-- incarnation, so that a commit of the reader that left it fails there\n"
    "-- (fenced). stale 1: the session is gone and no node holds it (it\n"
    "-- expired parked, or was clean and its node died): no longer a member.\n"
    "local function share_taken(keys, args)\n"
    "  local base = string.sub(keys[1], 1, #keys[1] - 6)\n"
    "  local out = {0}\n"
    "  if redis.call('EXISTS', base .. 'session') == 0 and\n"
    "    (redis.call('HGET', base .. 'own', 'tok') or '') == '' then out[1] = 1 end\n"
    "  for i = 4, #args do\n"
    "    if redis.call('HGET', keys[1], args[i]) == 'd' then out[#out + 1] = i - 3\n"
    "    else share_mark(keys[1], args[i], 't:' .. args[1], args[2], args[3]) end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "-- args: this incarnation, n, n own keys, then per command its group,\n"
    "-- its argc and its arguments;\n"
    "-- group 0 is the log's, group g the g-th session's, whose writes run only\n"
    "-- while its token names this incarnation. Returns the groups skipped.\n"
    "-- \"CAIRN.ONCE key n k\": unless key (this incarnation's append counter)\n"
    "-- already reached n, set it to n; else skip the k commands after it.\n"
    "-- \"CAIRN.MARK key field k epoch\" (a Redis Cluster's inbound QoS 2 marker:\n"
    "-- key is the publisher's hash, field the packet id): set the field to\n"
    "-- the publisher's claim epoch unless it exists; if it did, skip the k\n"
    "-- commands after it. \"CAIRN.FORGET key epoch\": forget_q2.\n"
    "-- \"CAIRN.UNMARK key field epoch\" (PUBREL): delete the marker field\n"
    "-- if it was set under that claim epoch or before (one a later claim set,\n"
    "-- another node's since, stays: the log's slot is not fenced).\n"
    "-- \"CAIRN.NX key k\" (a Redis Cluster's claimed will: its marker in the\n"
    "-- log's slot): set key unless it exists; if it did, skip the k commands\n"
    "-- after it. \"CAIRN.WILLDONE s ep\": remove the will a claim took\n"
    "-- (take_will) from session hash s, if it is still that one.\n"
    "-- \"CAIRN.SHARE key field cutoff ttl\" (a shared group's entry given to\n"
    "-- the session, share_mark): first, the session's writes are all dropped\n"
    "-- (fenced) if a takeover elsewhere marked the entry taken there.\n"
    "local function commit(keys, args)\n"
    "  local me, n = args[1], tonumber(args[2])\n"
    "  local ok, fenced = {}, {}\n"
    "  for g = 1, n do\n"
    "    if inc_of(redis.call('HGET', args[2 + g], 'tok')) == me then ok[g] = true\n"
    "    else fenced[#fenced + 1] = g end\n"
    "  end\n"
    "  local j = n + 3\n"
    "  while j <= #args do\n"
    "    local g, first = tonumber(args[j]), j + 2\n"
    "    j = first + tonumber(args[j + 1])\n"
    "    if ok[g] and args[first] == 'CAIRN.SHARE' then\n"
    "      local v = redis.call('HGET', args[first + 1], args[first + 2])\n"
    "      if v and v ~= 'd' and v ~= 't:' .. me then\n"
    "        ok[g] = nil\n"
    "        fenced[#fenced + 1] = g\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local skip, i = 0, n + 3\n"
    "  while i <= #args do\n"
    "    local g, first = tonumber(args[i]), i + 2\n"
    "    local last = i + 1 + tonumber(args[i + 1])\n"
    "    i = last + 1\n"
    "    if skip > 0 then skip = skip - 1\n"
    "    elseif g == 0 or ok[g] then\n"
    "      if args[first] == 'CAIRN.ONCE' then\n"
    "        if tonumber(redis.call('GET', args[first + 1]) or '0') >= tonumber(args[first + 2]) "
    "then\n"
    "          skip = tonumber(args[first + 3])\n"
    "        else\n"
    "          redis.call('SET', args[first + 1], args[first + 2], 'EX', 86400)\n"
    "        end\n"
    "      elseif args[first] == 'CAIRN.MARK' then\n"
    "        if redis.call('HSETNX', args[first + 1], args[first + 2], args[first + 4] or '1') "
    "== 0 then\n"
    "          skip = tonumber(args[first + 3])\n"
    "        else redis.call('EXPIRE', args[first + 1], 86400) end\n"
    "      elseif args[first] == 'CAIRN.FORGET' then\n"
    "        forget_q2(args[first + 1], tonumber(args[first + 2]))\n"
    "      elseif args[first] == 'CAIRN.UNMARK' then\n"
    "        local v = redis.call('HGET', args[first + 1], args[first + 2])\n"
    "        if v and (tonumber(v) or 0) <= tonumber(args[first + 3]) then\n"
    "          redis.call('HDEL', args[first + 1], args[first + 2])\n"
    "        end\n"
    "      elseif args[first] == 'CAIRN.NX' then\n"
    "        if not redis.call('SET', args[first + 1], '1', 'NX', 'EX', 86400) then\n"
    "          skip = tonumber(args[first + 2])\n"
    "        end\n"
    "      elseif args[first] == 'CAIRN.SHARE' then\n"
    "        share_mark(args[first + 1], args[first + 2], 'd', args[first + 3], args[first + 4])\n"
    "      elseif args[first] == 'CAIRN.WILLDONE' then\n"
    "        if redis.call('HGET', args[first + 1], 'will_ep') == args[first + 2] then\n"
    "          drop_will(args[first + 1])\n"
    "        end\n"
    "      else redis.call(unpack(args, first, last)) end\n"
    "    end\n"
    "  end\n"
    "  return fenced\n"
    "end\n"
    "-- args: prefix, client id, token. Takes the session: bumps the epoch,\n"
    "-- takes the token, kicks the previous holder, leaves it the will its\n"
    "-- connection left if due (take_will, defer_will: a delayed will is\n"
    "-- cancelled by this connection), takes a parked session's will a clean\n"
    "-- start makes due, for this node to publish, and\n"
    "-- returns {previous token, the session's cursor, session, subs,\n"
    "-- deliveries, message copies, inbound QoS 2 ids, the will (take_will),\n"
    "-- this claim's epoch, left_here}.\n"
    "local function claim(keys, args)\n"
    "  local pfx, id, tok, clean = args[1], args[2], args[3], args[4] == '1'\n"
    "  local base = pfx .. '{c:' .. id .. '}:'\n"
    "  local own = base .. 'own'\n"
    "  local me = inc_of(tok)\n"
    "  local old = redis.call('HGET', own, 'tok')\n"
    "  local epoch = redis.call('HINCRBY', own, 'epoch', 1)\n"
    "  redis.call('HSET', own, 'tok', tok)\n"
    "  local cursor = redis.call('HGET', own, 'cur') or ''\n"
    "  local same, will = false, {}\n"
    "  local inc = inc_of(old)\n"
    "  if inc then\n"
    "    same = inc == me\n"
    "    if cursor == '' then\n"
    "      cursor = redis.call('GET', pfx .. '{n:' .. inc .. '}:pos') or ''\n"
    "    end\n"
    "    if not same then\n"
    "      will = take_will(base .. 'session', epoch, clean)\n"
    "      local flag = ''\n"
    "      if #will > 0 then\n"
    "        defer_will(base, inc, will)\n"
    "        redis.call('SADD', pfx .. '{n:' .. inc .. '}:tw', id)\n"
    "        will, flag = {}, ':w'\n"
    "      end\n"
    "      redis.call('PUBLISH', pfx .. 'ctl:' .. inc, id .. '\\n' .. old .. flag)\n"
    "    end\n"
    "  elseif clean then\n"
    "    will = take_will(base .. 'session', epoch, true) -- parked, its will waiting\n"
    "  end\n"
    "  if not old then old = '' end\n"
    "  if not same and cursor ~= '' then redis.call('HSET', own, 'cur', cursor) end\n"
    "  redis.call('SADD', pfx .. '{n:' .. me .. '}:owned', id)\n"
    "  redis.call('ZREM', pfx .. 'cluster:wills', id)\n"
    "  redis.call('ZREM', pfx .. 'cluster:expiry', id)\n"
    "  return {old, cursor, claim_record(base .. 'session', will),\n"
    "    redis.call('HGETALL', base .. 'subs'), redis.call('HGETALL', base .. 'delivery'),\n"
    "    redis.call('HGETALL', base .. 'm'), redis.call('SMEMBERS', base .. 'inflight_in'), will,\n"
    "    epoch, left_here(base, me)}\n"
    "end\n"
    "-- args: prefix, this incarnation, now (ms). One node at a time. The\n"
    "-- sessions of an incarnation whose alive key lapsed are parked (no holder,\n"
    "-- cursor its mark) and the node is told (a kick), in case it lives on; a\n"
    "-- will that was due at its death, or whose delay runs out while its\n"
    "-- session stays parked, is handed to the node (below); a parked session\n"
    "-- past its expiry is deleted once its will is gone. Returns {parked,\n"
    "-- wills due, expired}.\n"
    "local function janitor(keys, args)\n"
    "  local pfx, me, now = args[1], args[2], tonumber(args[3])\n"
    "  local jk = pfx .. 'cluster:janitor'\n"
    "  local j = redis.call('GET', jk)\n"
    "  if j and j ~= me then return {0, {}, 0} end\n"
    "  redis.call('SET', jk, me, 'PX', 10000)\n"
    "  local parked, expired, tw = 0, 0, {}\n"
    "  for _, inc in ipairs(redis.call('SMEMBERS', pfx .. 'cluster:nodes')) do\n"
    "    if redis.call('EXISTS', pfx .. '{n:' .. inc .. '}:alive') == 0 then\n"
    "      local owned = pfx .. '{n:' .. inc .. '}:owned'\n"
    "      for _, id in ipairs(redis.call('SMEMBERS', owned)) do\n"
    "        local base = pfx .. '{c:' .. id .. '}:'\n"
    "        local tok = redis.call('HGET', base .. 'own', 'tok')\n"
    "        if inc_of(tok) == inc then\n"
    "          parked = parked + 1\n"
    "          redis.call('HINCRBY', base .. 'own', 'epoch', 1)\n"
    "          redis.call('HSET', base .. 'own', 'tok', '')\n"
    "          redis.call('PUBLISH', pfx .. 'ctl:' .. inc, id .. '\\n' .. tok)\n"
    "          if not redis.call('HGET', base .. 'own', 'cur') then\n"
    "            local pos = redis.call('GET', pfx .. '{n:' .. inc .. '}:pos')\n"
    "            if pos then redis.call('HSET', base .. 'own', 'cur', pos) end\n"
    "          end\n"
    "          local s = base .. 'session'\n"
    "          local f = redis.call('HMGET', s, 'connected', 'expiry_interval', 'will_delay',\n"
    "            'will_at', 'expires_at', 'will_topic')\n"
    "          if f[1] == '1' then\n"
    "            redis.call('HSET', s, 'connected', '0')\n"
    "            local exp = f[2] or '4294967295'\n"
    "            if f[6] then\n"
    "              local at = now + tonumber(f[3] or '0') * 1000\n"
    "              if exp == '0' then at = now end\n"
    "              redis.call('HSET', s, 'will_at', at)\n"
    "              redis.call('ZADD', pfx .. 'cluster:wills', at, id)\n"
    "            end\n"
    "            if exp ~= '4294967295' then\n"
    "              local ea = now + tonumber(exp) * 1000\n"
    "              redis.call('HSET', s, 'expires_at', ea)\n"
    "              redis.call('ZADD', pfx .. 'cluster:expiry', ea, id)\n"
    "            end\n"
    "          elseif f[1] == '0' then\n"
    "            local wa, ea = tonumber(f[4] or '0'), tonumber(f[5] or '0')\n"
    "            if wa > 0 and f[6] then redis.call('ZADD', pfx .. 'cluster:wills', wa, id) end\n"
    "            if ea > 0 then redis.call('ZADD', pfx .. 'cluster:expiry', ea, id) end\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "      redis.call('DEL', owned)\n"
    "      -- The wills claims left it: each stays listed (and the node with\n"
    "      -- them) until cairn_will has appended it and removed its record,\n"
    "      -- so a janitor that dies midway leaves the rest to the next round.\n"
    "      local twk = pfx .. '{n:' .. inc .. '}:tw'\n"
    "      for _, id in ipairs(redis.call('SMEMBERS', twk)) do\n"
    "        local f = redis.call('HMGET', pfx .. '{c:' .. id .. '}:tw:' .. inc, 'will_topic',\n"
    "          'username')\n"
    "        if f[1] then\n"
    "          tw[#tw + 1] = {id, 'tw:' .. inc, f[1], f[2] and '1' or '0', f[2] or ''}\n"
    "        else\n"
    "          redis.call('SREM', twk, id)\n"
    "        end\n"
    "      end\n"
    "      if redis.call('SCARD', twk) == 0 then\n"
    "        redis.call('SREM', pfx .. 'cluster:nodes', inc)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local function parked_session(id)\n"
    "    return redis.call('HGET', pfx .. '{c:' .. id .. '}:own', 'tok') == ''\n"
    "  end\n"
    "  -- A due will goes back to the node (due: id, epoch, topic, username or\n"
    "  -- false), which publishes it with cairn_will if its access rules let\n"
    "  -- the client write the topic now; its deadline stays until then (a\n"
    "  -- janitor that dies meanwhile leaves it to the next round).\n"
    "  local due, seen = tw, {}\n"
    "  local function will_due(id)\n"
    "    local base = pfx .. '{c:' .. id .. '}:'\n"
    "    local f = redis.call('HMGET', base .. 'session', 'will_topic', 'username')\n"
    "    if not f[1] then return false end\n"
    "    if not seen[id] then\n"
    "      seen[id] = true\n"
    "      due[#due + 1] = {id, redis.call('HGET', base .. 'own', 'epoch') or '0', f[1],\n"
    "        f[2] and '1' or '0', f[2] or ''}\n"
    "    end\n"
    "    return true\n"
    "  end\n"
    "  local wk = pfx .. 'cluster:wills'\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', wk, '-inf', now, 'LIMIT', 0, 100)) do\n"
    "    if not (parked_session(id) and will_due(id)) then redis.call('ZREM', wk, id) end\n"
    "  end\n"
    "  local ek = pfx .. 'cluster:expiry'\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', ek, '-inf', now, 'LIMIT', 0, 100)) do\n"
    "    if not parked_session(id) then\n"
    "      redis.call('ZREM', ek, id)\n"
    "    elseif will_due(id) then\n"
    "      -- Its will goes first; the session at a later round.\n"
    "      redis.call('ZADD', wk, now, id)\n"
    "    else\n"
    "      redis.call('ZREM', ek, id)\n"
    "      local base = pfx .. '{c:' .. id .. '}:'\n"
    "      redis.call('DEL', base .. 'session', base .. 'subs', base .. 'delivery', base .. 'm',\n"
    "        base .. 'inflight_in')\n"
    "      redis.call('HDEL', base .. 'own', 'cur')\n"
    "      expired = expired + 1\n"
    "    end\n"
    "  end\n"
    "  return {parked, due, expired}\n"
    "end\n"
    "-- Append a will {topic, payload, qos, retain, props} of client id to the\n"
    "-- log (and the retained hash) in the log's slot, once per marker key.\n"
    "local function append_will(g, id, w, marker)\n"
    "  if not redis.call('SET', marker, '1', 'NX', 'EX', 86400) then return 0 end\n"
    "  local props, ea = will_expiry(w[5], now_ms())\n"
    "  redis.call('XADD', g .. 'log', '*', 't', w[1], 'p', w[2], 'q', w[3], 'r', w[4],\n"
    "    'x', string.format('%d', ea), 'o', props, 'f', id)\n"
    "  if w[4] == '1' then\n"
    "    if #w[2] == 0 then redis.call('HDEL', g .. 'retained', w[1])\n"
    "    else redis.call('HSET', g .. 'retained', w[1], retained_value(w[3], props, w[2], ea)) "
    "end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "-- args: prefix, id, epoch, '1' to publish or '0' to drop, now (ms), the\n"
    "-- key base of the will topic's log partition (PREFIX{L:p}:). The\n"
    "-- janitor's due will of a session still parked at that epoch: published\n"
    "-- (once per name) or dropped (the node's access rules deny it), and\n"
    "-- removed, in one call.\n"
    "local function will(keys, args)\n"
    "  local pfx, id, epoch, now = args[1], args[2], args[3], tonumber(args[5])\n"
    "  local base = pfx .. '{c:' .. id .. '}:'\n"
    "  local own = base .. 'own'\n"
    "  if string.sub(epoch, 1, 3) == 'tw:' then\n"
    "    -- A will a claim left to a node that died (defer_will): once per\n"
    "    -- will_ep, as that node's own append of it; its record goes, and\n"
    "    -- its entry in the node's list, in the same call.\n"
    "    local s = base .. epoch\n"
    "    local w = redis.call('HMGET', s, 'will_topic', 'will_payload', 'will_qos',\n"
    "      'will_retain', 'will_props', 'will_ep')\n"
    "    redis.call('DEL', s)\n"
    "    redis.call('SREM', pfx .. '{n:' .. string.sub(epoch, 4) .. '}:tw', id)\n"
    "    if not w[1] or args[4] ~= '1' then return 0 end\n"
    "    local g = args[6] or (pfx .. '{L:0}:')\n"
    "    return append_will(g, id, {w[1], w[2] or '', w[3] or '0', w[4] or '0', w[5] or ''},\n"
    "      g .. 'w:' .. id .. ':e' .. (w[6] or '0'))\n"
    "  end\n"
    "  if redis.call('HGET', own, 'tok') ~= '' or\n"
    "      (redis.call('HGET', own, 'epoch') or '0') ~= epoch then\n"
    "    return 0\n"
    "  end\n"
    "  redis.call('ZREM', pfx .. 'cluster:wills', id)\n"
    "  local s = base .. 'session'\n"
    "  local w = redis.call('HMGET', s, 'will_topic', 'will_payload', 'will_qos', 'will_retain',\n"
    "    'will_props', 'will_ep')\n"
    "  drop_will(s)\n"
    "  if args[4] ~= '1' or not w[1] then return 0 end\n"
    "  -- Once per name: will_ep, the claim of the connection that left it,\n"
    "  -- under which that node appends it should it live on (a stall), as on\n"
    "  -- a Redis Cluster (wills_g); else this epoch.\n"
    "  local g = args[6] or (pfx .. '{L:0}:')\n"
    "  return append_will(g, id, {w[1], w[2] or '', w[3] or '0', w[4] or '0', w[5] or ''},\n"
    "    g .. 'w:' .. id .. ':e' .. (w[6] or epoch))\n"
    "end\n"
    "-- On a Redis Cluster: the claim's part in the session's slot. As claim,\n"
    "-- without the node keys: the previous node's mark is its copy on this\n"
    "-- master (args[4], written with every commit that wrote here, so it\n"
    "-- agrees with the session's keys); it handles the will the previous\n"
    "-- connection left on another node (take_will, defer_will, as claim).\n"
    "-- Returns claim's list (the will, as take_will returns it, the claim's\n"
    "-- epoch), then '1' if it left the will to the previous node, else '0',\n"
    "-- and left_here.\n"
    "local function claim_s(keys, args)\n"
    "  local pfx, id, tok, marks, clean = args[1], args[2], args[3], args[4], args[5] == '1'\n"
    "  local base = pfx .. '{c:' .. id .. '}:'\n"
    "  local own = base .. 'own'\n"
    "  local me = inc_of(tok)\n"
    "  local old = redis.call('HGET', own, 'tok')\n"
    "  local epoch = redis.call('HINCRBY', own, 'epoch', 1)\n"
    "  redis.call('HSET', own, 'tok', tok)\n"
    "  local cursor = redis.call('HGET', own, 'cur') or ''\n"
    "  local will, left = {}, '0'\n"
    "  local inc = inc_of(old)\n"
    "  if inc and cursor == '' then\n"
    "    cursor = redis.call('HGET', marks, inc) or ''\n"
    "  end\n"
    "  if inc and inc ~= me and cursor ~= '' then redis.call('HSET', own, 'cur', cursor) end\n"
    "  if inc and inc ~= me then\n"
    "    will = take_will(base .. 'session', epoch, clean)\n"
    "    local flag = ''\n"
    "    if #will > 0 then defer_will(base, inc, will); will, flag, left = {}, ':w', '1' end\n"
    "    redis.call('PUBLISH', pfx .. 'ctl:' .. inc, id .. '\\n' .. old .. flag)\n"
    "  elseif not inc and clean then\n"
    "    will = take_will(base .. 'session', epoch, true) -- parked, its will waiting\n"
    "  end\n"
    "  if not old then old = '' end\n"
    "  return {old, cursor, claim_record(base .. 'session', will),\n"
    "    redis.call('HGETALL', base .. 'subs'), redis.call('HGETALL', base .. 'delivery'),\n"
    "    redis.call('HGETALL', base .. 'm'), redis.call('SMEMBERS', base .. 'inflight_in'), will,\n"
    "    epoch, left, left_here(base, me)}\n"
    "end\n"
    "-- On a Redis Cluster: the claim's part in the log's slot ({L:0}, where\n"
    "-- the node keys are too). args: {L:0} key base, id, this incarnation,\n"
    "-- the incarnation claim_s left the will to (defer_will) or '', the\n"
    "-- previous holder's token. Records the session as this node's, the\n"
    "-- will left in that node's set, and drops its janitor deadlines;\n"
    "-- returns ''.\n"
    "local function claim_g(keys, args)\n"
    "  local g, id, me = args[1], args[2], args[3]\n"
    "  redis.call('SADD', g .. 'n:' .. me .. ':owned', id)\n"
    "  -- A will claim_s may have left to that node (defer_will).\n"
    "  if args[4] and args[4] ~= '' then redis.call('SADD', g .. 'n:' .. args[4] .. ':tw', id) "
    "end\n"
    "  redis.call('ZREM', g .. 'cluster:wills', id)\n"
    "  redis.call('ZREM', g .. 'cluster:expiry', id)\n"
    "  return ''\n"
    "end\n"
    "-- On a Redis Cluster, the janitor's part in the log's slot. args: {L:0}\n"
    "-- key base, this incarnation, now (ms). One node at a time. Returns\n"
    "-- {run, departed, wills due, expiries due, left wills}: departed is a list of\n"
    "-- {incarnation, its mark, its sessions...} lists; the node keys of the\n"
    "-- departed go (but for their lists of left wills, until emptied), and\n"
    "-- so do the deadlines handed out; left wills is a flat list of\n"
    "-- (incarnation, id) of the wills claims left to the departed.\n"
    "local function janitor_g(keys, args)\n"
    "  local g, me, now = args[1], args[2], tonumber(args[3])\n"
    "  local jk = g .. 'cluster:janitor'\n"
    "  local j = redis.call('GET', jk)\n"
    "  if j and j ~= me then return {0, {}, {}, {}} end\n"
    "  redis.call('SET', jk, me, 'PX', 10000)\n"
    "  local dead, tw = {}, {}\n"
    "  for _, inc in ipairs(redis.call('SMEMBERS', g .. 'cluster:nodes')) do\n"
    "    local nb = g .. 'n:' .. inc .. ':'\n"
    "    if redis.call('EXISTS', nb .. 'alive') == 0 then\n"
    "      local d = {inc, redis.call('GET', nb .. 'pos') or ''}\n"
    "      for _, id in ipairs(redis.call('SMEMBERS', nb .. 'owned')) do d[#d + 1] = id end\n"
    "      dead[#dead + 1] = d\n"
    "      redis.call('DEL', nb .. 'owned')\n"
    "      -- Each will left it stays listed (and the node with them) until\n"
    "      -- appended and its record removed (rd_rjanitor_tw_done).\n"
    "      for _, id in ipairs(redis.call('SMEMBERS', nb .. 'tw')) do\n"
    "        tw[#tw + 1] = inc; tw[#tw + 1] = id\n"
    "      end\n"
    "      if redis.call('SCARD', nb .. 'tw') == 0 then\n"
    "        redis.call('SREM', g .. 'cluster:nodes', inc)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local function due(k)\n"
    "    local ids = redis.call('ZRANGEBYSCORE', k, '-inf', now, 'LIMIT', 0, 100)\n"
    "    for _, id in ipairs(ids) do redis.call('ZREM', k, id) end\n"
    "    return ids\n"
    "  end\n"
    "  return {1, dead, due(g .. 'cluster:wills'), due(g .. 'cluster:expiry'), tw}\n"
    "end\n"
    "-- On a Redis Cluster, the janitor's part in a session's slot. args:\n"
    "-- prefix, id, what, then for 'park' the departed incarnation, the key\n"
    "-- of the marks on this master and now (ms). 'park': park the session if\n"
    "-- that incarnation still\n"
    "-- holds it; returns {'park', will_at, expires_at} ('' for none).\n"
    "-- 'will' and 'expire' (a deadline that came): if the session is still\n"
    "-- parked, take its will (and, to expire, delete the session); returns\n"
    "-- {'will', topic, payload, qos, retain, props, epoch, has username,\n"
    "-- username, the will's name}, else for an expiry {'expired', epoch}, or {}.\n"
    "local function janitor_s(keys, args)\n"
    "  local pfx, id, what = args[1], args[2], args[3]\n"
    "  local base = pfx .. '{c:' .. id .. '}:'\n"
    "  local own, s = base .. 'own', base .. 'session'\n"
    "  local tok = redis.call('HGET', own, 'tok')\n"
    "  if what == 'park' then\n"
    "    local inc, now = args[4], tonumber(args[6])\n"
    "    local pos = redis.call('HGET', args[5], inc) or ''\n"
    "    if inc_of(tok) ~= inc then return {} end\n"
    "    redis.call('HINCRBY', own, 'epoch', 1)\n"
    "    redis.call('HSET', own, 'tok', '')\n"
    "    redis.call('PUBLISH', pfx .. 'ctl:' .. inc, id .. '\\n' .. tok)\n"
    "    if pos ~= '' and not redis.call('HGET', own, 'cur') then\n"
    "      redis.call('HSET', own, 'cur', pos)\n"
    "    end\n"
    "    local f = redis.call('HMGET', s, 'connected', 'expiry_interval', 'will_delay',\n"
    "      'will_at', 'expires_at', 'will_topic')\n"
    "    local wa, ea = '', ''\n"
    "    if f[1] == '1' then\n"
    "      redis.call('HSET', s, 'connected', '0')\n"
    "      local exp = f[2] or '4294967295'\n"
    "      if f[6] then\n"
    "        local at = now + tonumber(f[3] or '0') * 1000\n"
    "        if exp == '0' then at = now end\n"
    "        redis.call('HSET', s, 'will_at', at)\n"
    "        wa = tostring(at)\n"
    "      end\n"
    "      if exp ~= '4294967295' then\n"
    "        local at = now + tonumber(exp) * 1000\n"
    "        redis.call('HSET', s, 'expires_at', at)\n"
    "        ea = tostring(at)\n"
    "      end\n"
    "    elseif f[1] == '0' then\n"
    "      if tonumber(f[4] or '0') > 0 and f[6] then wa = f[4] end\n"
    "      if tonumber(f[5] or '0') > 0 then ea = f[5] end\n"
    "    end\n"
    "    return {'park', wa, ea}\n"
    "  end\n"
    "  if what == 'tw' then\n"
    "    -- A will a claim left to a departed node (defer_will), by its name;\n"
    "    -- its record stays until the will is appended (rd_rjanitor_tw_done).\n"
    "    local r = base .. 'tw:' .. args[4]\n"
    "    local w = redis.call('HMGET', r, 'will_topic', 'will_payload', 'will_qos',\n"
    "      'will_retain', 'will_props', 'username', 'will_ep')\n"
    "    if not w[1] then return {} end\n"
    "    return {'will', w[1], w[2] or '', w[3] or '0', w[4] or '0', w[5] or '', '0',\n"
    "      w[6] and '1' or '0', w[6] or '', w[7] or '0'}\n"
    "  end\n"
    "  if tok ~= '' then return {} end\n"
    "  local epoch = redis.call('HGET', own, 'epoch') or '0'\n"
    "  local w = redis.call('HMGET', s, 'will_topic', 'will_payload', 'will_qos', 'will_retain',\n"
    "    'will_props', 'username', 'will_ep')\n"
    "  local out = {}\n"
    "  if w[1] then\n"
    "    -- Last, the will's name: a will a claim took keeps its own (its\n"
    "    -- marker may be set already), another is named by this epoch.\n"
    "    out = {'will', w[1], w[2] or '', w[3] or '0', w[4] or '0', w[5] or '', epoch,\n"
    "      w[6] and '1' or '0', w[6] or '', w[7] or epoch}\n"
    "    drop_will(s)\n"
    "  end\n"
    "  if what == 'expire' then\n"
    "    redis.call('DEL', s, base .. 'subs', base .. 'delivery', base .. 'm',\n"
    "      base .. 'inflight_in')\n"
    "    redis.call('HDEL', own, 'cur')\n"
    "    if #out == 0 then out = {'expired', epoch} end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "-- On a Redis Cluster: the wills the janitor took, in the slot of their\n"
    "-- topics' log partition. args: its key base (PREFIX{L:p}:), then per will\n"
    "-- id, its name (an epoch: janitor_s), topic, payload, qos,\n"
    "-- retain, props. Returns how many went out (once per session epoch).\n"
    "local function wills_g(keys, args)\n"
    "  local g, n = args[1], 0\n"
    "  for i = 2, #args, 7 do\n"
    "    n = n + append_will(g, args[i], {args[i + 2], args[i + 3], args[i + 4], args[i + 5],\n"
    "      args[i + 6]}, g .. 'w:' .. args[i] .. ':e' .. args[i + 1])\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "redis.register_function{function_name = 'cairn_commit', callback = commit,\n"
    "  flags = {'allow-cross-slot-keys'}}\n"
    "redis.register_function('cairn_claim', claim)\n"
    "redis.register_function('cairn_janitor', janitor)\n"
    "redis.register_function('cairn_will', will)\n"
    "redis.register_function{function_name = 'cairn_claim_s', callback = claim_s,\n"
    "  flags = {'allow-cross-slot-keys'}}\n"
    "redis.register_function('cairn_claim_g', claim_g)\n"
    "redis.register_function('cairn_janitor_g', janitor_g)\n"
    "redis.register_function{function_name = 'cairn_janitor_s', callback = janitor_s,\n"
    "  flags = {'allow-cross-slot-keys'}}\n"
    "redis.register_function('cairn_wills_g', wills_g)\n"
    "redis.register_function('cairn_share_taken', share_taken)\n"
    "redis.register_function('cairn_q2_forget', function(keys, args)\n"
    "  forget_q2(keys[1], tonumber(args[1]))\n"
    "  return 0\n"
    "end)\n";

/* ---- the sessions held here: client id -> connection serial ---- */

/* An inbound QoS 2 marker this hold set: its packet id and partition. */
struct rd_q2part {
	uint16_t pid;
	uint16_t part;
};

struct rd_owner {
	struct rd_owner *next;
	char *id;
	uint64_t serial;
	uint64_t epoch; /* the claim's epoch ({c:ID}:own) */
	/* The claim before, when this node claimed the session again (its
	 * client came back here): the will of that claim's connection goes
	 * out under its epoch (rd_cluster_log_append). */
	uint64_t prev_serial, prev_epoch;
	uint64_t gen_id; /* this hold; a claim from another node starts a new one */
	uint64_t gen;    /* the commit that gave it a group */
	size_t group;
	/* On a Redis Cluster: where this hold's markers are (a PUBREL then
	 * deletes one, not one per partition). */
	struct rd_q2part *q2;
	size_t nq2, q2cap;
};

struct rd_group {
	char *id;
	uint64_t serial;
	uint64_t gen_id;
};

struct rd_owners {
	struct rd_owner **b;
	size_t nb, n;
	uint64_t gen;
	uint64_t holds; /* the last gen_id given */
	/* The sessions of the commit in flight, by group number - 1 (copies:
	 * a session may be released while the commit runs). */
	struct rd_group *gv;
	size_t gn, gcap;
};

static size_t rd_hash(const char *s)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

static struct rd_owner **rd_owner_find(struct rd_owners *o, const char *id)
{
	struct rd_owner **pp;

	if (o->nb == 0)
		return NULL;
	for (pp = &o->b[rd_hash(id) & (o->nb - 1)]; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->id, id) == 0)
			return pp;
	return pp;
}

/* Hold id under serial, claimed at epoch; fresh: a new hold (a claim
 * from another node), whose writes staged under the previous hold are
 * dropped. */
static void rd_owner_set(struct rd_owners *o, const char *id, uint64_t serial, uint64_t epoch,
			 bool fresh)
{
	struct rd_owner **pp, *e;

	if (o->n + 1 > o->nb) {
		size_t nb = o->nb ? o->nb * 2 : 64;
		struct rd_owner **b = bk_xcalloc(nb, sizeof(*b));

		for (size_t i = 0; i < o->nb; i++) {
			while ((e = o->b[i]) != NULL) {
				o->b[i] = e->next;
				e->next = b[rd_hash(e->id) & (nb - 1)];
				b[rd_hash(e->id) & (nb - 1)] = e;
			}
		}
		free(o->b);
		o->b = b;
		o->nb = nb;
	}
	pp = rd_owner_find(o, id);
	if (*pp != NULL) {
		if ((*pp)->serial != serial) {
			(*pp)->prev_serial = (*pp)->serial;
			(*pp)->prev_epoch = (*pp)->epoch;
		}
		(*pp)->serial = serial;
		(*pp)->epoch = epoch;
		if (fresh) {
			(*pp)->gen_id = ++o->holds;
			(*pp)->nq2 = 0; /* another node may have reused the ids */
		}
		return;
	}
	e = bk_xcalloc(1, sizeof(*e));
	e->id = bk_xstrdup(id);
	e->serial = serial;
	e->epoch = epoch;
	e->gen_id = ++o->holds;
	*pp = e;
	o->n++;
}

static void rd_owner_drop(struct rd_owners *o, const char *id)
{
	struct rd_owner **pp = rd_owner_find(o, id), *e;

	if (pp == NULL || (e = *pp) == NULL)
		return;
	*pp = e->next;
	free(e->q2);
	free(e->id);
	free(e);
	o->n--;
}

static void rd_groups_clear(struct rd_owners *o)
{
	for (size_t i = 0; i < o->gn; i++)
		free(o->gv[i].id);
	o->gn = 0;
}

static void rd_owners_free(struct rd_owners *o)
{
	if (o == NULL)
		return;
	for (size_t i = 0; i < o->nb; i++) {
		struct rd_owner *e, *next;

		for (e = o->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e->q2);
			free(e->id);
			free(e);
		}
	}
	free(o->b);
	rd_groups_clear(o);
	free(o->gv);
	free(o);
}

uint64_t rd_cluster_epoch(const struct cairn_store *st, const char *client_id)
{
	struct rd_owner **pp = rd_owner_find(st->owners, client_id);

	return pp != NULL && *pp != NULL ? (*pp)->epoch : 0;
}

bool rd_cluster_owns(const struct cairn_store *st, const char *client_id)
{
	return rd_cluster_hold(st, client_id) != 0;
}

uint64_t rd_cluster_hold(const struct cairn_store *st, const char *client_id)
{
	struct rd_owner **pp = rd_owner_find(st->owners, client_id);

	return pp != NULL && *pp != NULL ? (*pp)->gen_id : 0;
}

/* ---- messages put and not yet deleted: msg_id -> their value ---- */

struct rd_msg {
	struct rd_msg *next;
	uint64_t id;
	char *val;
	size_t len;
};

struct rd_msgs {
	struct rd_msg **b;
	size_t nb, n;
};

static struct rd_msg **rd_msg_find(const struct rd_msgs *m, uint64_t id)
{
	struct rd_msg **pp;

	if (m->nb == 0)
		return NULL;
	for (pp = &m->b[(id * 0x9E3779B97F4A7C15ull >> 20) & (m->nb - 1)]; *pp != NULL;
	     pp = &(*pp)->next)
		if ((*pp)->id == id)
			return pp;
	return pp;
}

/*
 * A message copy kept with a delivery: "<retain><topic_len>;<topic>" and
 * then rd_msg_value's encoding. It lives in the session's keys, so a node
 * that claims the session reads everything it needs in one slot, and a
 * session's messages go with its deliveries.
 */
void rd_cluster_msg_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	struct rd_msgs *m = st->msgs;
	size_t tl = strlen(rec->topic), vl;
	char *v = rd_msg_value(rec, &vl), *val = bk_xmalloc(vl + tl + 24);
	int n = snprintf(val, 24, "%c%zu;", rec->retain ? '1' : '0', tl);
	struct rd_msg **pp, *e;

	memcpy(val + n, rec->topic, tl);
	memcpy(val + (size_t)n + tl, v, vl);
	free(v);
	if (m->n + 1 > m->nb) {
		size_t nb = m->nb ? m->nb * 2 : 256, ob = m->nb;
		struct rd_msg **old = m->b;

		m->b = bk_xcalloc(nb, sizeof(*m->b));
		m->nb = nb;
		for (size_t i = 0; i < ob; i++) {
			while ((e = old[i]) != NULL) {
				old[i] = e->next;
				pp = rd_msg_find(m, e->id);
				e->next = NULL;
				*pp = e;
			}
		}
		free(old);
	}
	pp = rd_msg_find(m, rec->msg_id);
	if (*pp != NULL) {
		free((*pp)->val);
		(*pp)->val = val;
		(*pp)->len = (size_t)n + tl + vl;
		return;
	}
	e = bk_xcalloc(1, sizeof(*e));
	e->id = rec->msg_id;
	e->val = val;
	e->len = (size_t)n + tl + vl;
	*pp = e;
	m->n++;
}

void rd_cluster_msg_delete(struct cairn_store *st, uint64_t msg_id)
{
	struct rd_msg **pp = rd_msg_find(st->msgs, msg_id), *e;

	if (pp == NULL || (e = *pp) == NULL)
		return;
	*pp = e->next;
	free(e->val);
	free(e);
	st->msgs->n--;
}

const char *rd_cluster_msg_value(const struct cairn_store *st, uint64_t msg_id, size_t *len)
{
	struct rd_msg **pp = rd_msg_find(st->msgs, msg_id);

	if (pp == NULL || *pp == NULL)
		return NULL;
	*len = (*pp)->len;
	return (*pp)->val;
}

static void rd_msgs_free(struct rd_msgs *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nb; i++) {
		struct rd_msg *e, *next;

		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e->val);
			free(e);
		}
	}
	free(m->b);
	free(m);
}

/* Parse a message copy (rd_cluster_msg_put) into rec. */
static bool rd_msg_copy_parse(const char *s, size_t len, struct cairn_msg_rec *rec)
{
	const char *end = s + len, *semi;
	uint64_t tl;

	if (len < 3 || (s[0] != '0' && s[0] != '1'))
		return false;
	rec->retain = s[0] == '1';
	semi = memchr(s + 1, ';', (size_t)(end - s - 1));
	if (semi == NULL ||
	    !rd_parse_u64(s + 1, (size_t)(semi - s - 1), (uint64_t)(end - semi - 1), &tl))
		return false;
	/* The topic is copied out: it needs its NUL. */
	rec->topic = bk_xstrndup(semi + 1, (size_t)tl);
	if (!rd_retained_parse(semi + 1 + tl, (size_t)(end - semi - 1 - (ptrdiff_t)tl), rec)) {
		free((char *)rec->topic);
		rec->topic = NULL;
		return false;
	}
	return true;
}

/* ---- open, keys ---- */

int rd_cluster_open(struct cairn_store *st, const struct cairn_store_options *opts, char *err,
		    size_t errlen)
{
	const char *on = opts->get != NULL ? opts->get(opts->get_arg, "cluster") : NULL;
	const char *id = opts->get != NULL ? opts->get(opts->get_arg, "cluster_node_id") : NULL;
	const char *ret = opts->get != NULL ? opts->get(opts->get_arg, "message_retention") : NULL;
	const char *parts =
	    opts->get != NULL ? opts->get(opts->get_arg, "cluster_log_partitions") : NULL;
	uint64_t secs = 86400, np = 1;

	if (on == NULL || strcmp(on, "true") != 0)
		return 0;
	if (ret != NULL && !rd_parse_u64(ret, strlen(ret), 100u * 365 * 86400, &secs)) {
		bk_errf(err, errlen, "message_retention must be a number of seconds, got '%s'",
			ret);
		return CAIRN_EINVAL;
	}
	if (parts != NULL &&
	    (!rd_parse_u64(parts, strlen(parts), CAIRN_LOG_PARTITIONS_MAX, &np) || np == 0)) {
		bk_errf(err, errlen, "cluster_log_partitions must be 1 to %u, got '%s'",
			(unsigned)CAIRN_LOG_PARTITIONS_MAX, parts);
		return CAIRN_EINVAL;
	}
	st->cluster = true;
	st->partitions = (uint32_t)np;
	st->node_id = bk_xstrdup(id != NULL && id[0] != '\0' ? id : "cairn");
	st->retention_ms = (int64_t)secs * 1000;
	st->owners = bk_xcalloc(1, sizeof(*st->owners));
	st->msgs = bk_xcalloc(1, sizeof(*st->msgs));
	return 0;
}

/* A connection of its own (the log reader, the kick subscriber). */
struct rd_aux {
	struct cairn_store *st;
	redisAsyncContext *ac;
	struct event *retry;
	bool reader;   /* else the control subscriber */
	uint32_t part; /* the reader's partition */
	bool lost;     /* a loss was logged */
};

static void rd_aux_free(struct rd_aux *a)
{
	if (a == NULL)
		return;
	if (a->ac != NULL) {
		a->ac->data = NULL;
		redisAsyncFree(a->ac);
	}
	if (a->retry != NULL)
		event_free(a->retry);
	free(a);
}

void rd_cluster_free(struct cairn_store *st)
{
	/* First: their callbacks find no store, and touch nothing below. */
	rd_route_free(st);
	rd_parts_drop_phase2(st);
	rd_janitor_free(st->janitor);
	st->janitor = NULL;
	free(st->last_in_id);
	free(st->mark_sent);
	if (st->beat_ev != NULL)
		event_free(st->beat_ev);
	st->beat_ev = NULL;
	for (uint32_t p = 0; st->log_keys != NULL && p < st->partitions; p++) {
		free(st->log_keys[p]);
		free(st->retained_keys[p]);
		free(st->once_keys[p]);
		rd_aux_free(st->readers[p]);
	}
	free(st->log_keys);
	free(st->retained_keys);
	free(st->once_keys);
	free(st->readers);
	st->log_keys = st->retained_keys = st->once_keys = NULL;
	st->readers = NULL;
	st->log_key = NULL; /* log_keys[0] */
	free(st->read_pos);
	free(st->claim_cur);
	st->read_pos = st->claim_cur = NULL;
	free(st->mark_key);
	rd_aux_free(st->control);
	st->control = NULL;
	rd_owners_free(st->owners);
	rd_msgs_free(st->msgs);
	for (size_t i = 0; i < st->nfenced; i++)
		free(st->fenced[i]);
	free(st->fenced);
	free(st->fenced_serial);
	free(st->node_id);
}

char *rd_cluster_key(const struct cairn_store *st, const char *kind, const char *id)
{
	static const char *const session_kinds[] = {"session",     "subs", "delivery",
						    "inflight_in", "m",    "own"};

	if (id != NULL) {
		for (size_t i = 0; i < sizeof(session_kinds) / sizeof(session_kinds[0]); i++)
			if (strcmp(kind, session_kinds[i]) == 0)
				return bk_strf("%s{c:%s}:%s", st->prefix, id, kind);
		return NULL;
	}
	if (strcmp(kind, "retained") == 0 || strcmp(kind, "log") == 0)
		return bk_strf("%s{L:0}:%s", st->prefix, kind);
	return NULL;
}

char *rd_cluster_part_key(const struct cairn_store *st, const char *kind, uint32_t part)
{
	return bk_strf("%s{L:%u}:%s", st->prefix, (unsigned)part, kind);
}

/* A key of incarnation inc ("alive", "pos", "owned"): PREFIX{n:INC}:kind,
 * or on a Redis Cluster PREFIX{L:0}:n:INC:kind, in the log's slot with
 * every key the janitor and the claims read together. */
static char *rd_node_key(const struct cairn_store *st, const char *inc, const char *kind)
{
	return st->rcluster ? bk_strf("%s{L:0}:n:%s:%s", st->prefix, inc, kind)
			    : bk_strf("%s{n:%s}:%s", st->prefix, inc, kind);
}

/*
 * On a Redis Cluster, the hash of the nodes' marks kept on master m,
 * PREFIX{m:T}:marks (incarnation -> mark), T the first number whose tag
 * hashes to a slot m serves. A commit writes this node's mark there in
 * each master's call, so that a claim reads, on the session's master and
 * in one step with its keys, a mark that agrees with them: the log's
 * master may already hold a later mark whose deliveries another master
 * refused (fenced) or never got (the node died between the calls).
 */
static char *rd_marks_key(struct cairn_store *st, uint16_t m)
{
	const char *tag = rd_route_marks_tag(st, m);

	return tag != NULL ? bk_strf("%s{%s}:marks", st->prefix, tag) : NULL;
}

/* The marks key on the master of client_id's session. */
static char *rd_marks_key_of(struct cairn_store *st, const char *client_id)
{
	char *own = rd_key(st, "own", client_id);
	char *k = rd_marks_key(st, rd_slot_master(st, rd_key_slot(own, strlen(own))));

	free(own);
	/* A slot no master serves: the call fails there anyway. */
	return k != NULL ? k : bk_xstrdup("");
}

/* PREFIXcluster:name, or on a Redis Cluster PREFIX{L:0}:cluster:name. */
static char *rd_global_key(const struct cairn_store *st, const char *name)
{
	return st->rcluster ? bk_strf("%s{L:0}:cluster:%s", st->prefix, name)
			    : bk_strf("%scluster:%s", st->prefix, name);
}

/* ---- log positions ---- */

static bool rd_pos_parse(const char *s, size_t len, struct cairn_log_pos *p)
{
	const char *dash = memchr(s, '-', len);

	return dash != NULL && rd_parse_u64(s, (size_t)(dash - s), UINT64_MAX, &p->ms) &&
	       rd_parse_u64(dash + 1, len - (size_t)(dash - s) - 1, UINT64_MAX, &p->seq);
}

size_t rd_pos_format(char *out, struct cairn_log_pos p)
{
	return (size_t)snprintf(out, 48, "%llu-%llu", (unsigned long long)p.ms,
				(unsigned long long)p.seq);
}

/*
 * A position in every partition (a session's cursor, a node's mark): with
 * one partition "MS-SEQ", as before partitions; with P, the P positions
 * joined by ','. The functions copy it as an opaque string.
 */
static char *rd_posv_format(const struct cairn_store *st, const struct cairn_log_pos *v)
{
	char *out = bk_xmalloc((size_t)st->partitions * 48), *o = out;

	for (uint32_t p = 0; p < st->partitions; p++) {
		if (p > 0)
			*o++ = ',';
		o += rd_pos_format(o, v[p]);
	}
	return out;
}

/* False unless s holds exactly st->partitions positions. */
static bool rd_posv_parse(const struct cairn_store *st, const char *s, size_t len,
			  struct cairn_log_pos *v)
{
	for (uint32_t p = 0; p < st->partitions; p++) {
		const char *comma = memchr(s, ',', len);
		size_t n = comma != NULL ? (size_t)(comma - s) : len;

		if ((comma != NULL) != (p + 1 < st->partitions) || !rd_pos_parse(s, n, &v[p]))
			return false;
		if (comma != NULL) {
			len -= n + 1;
			s = comma + 1;
		}
	}
	return true;
}

/* ---- the commit ---- */

static void rd_fenced_add(struct cairn_store *st, const char *id, uint64_t serial)
{
	if (st->nfenced == st->fenced_cap) {
		st->fenced_cap = st->fenced_cap ? st->fenced_cap * 2 : 8;
		st->fenced = bk_xrealloc(st->fenced, st->fenced_cap * sizeof(*st->fenced));
		st->fenced_serial =
		    bk_xrealloc(st->fenced_serial, st->fenced_cap * sizeof(*st->fenced_serial));
	}
	st->fenced[st->nfenced] = bk_xstrdup(id);
	st->fenced_serial[st->nfenced] = serial;
	st->nfenced++;
}

void rd_cluster_report_fenced(struct cairn_store *st)
{
	size_t n = st->nfenced;

	st->nfenced = 0;
	for (size_t i = 0; i < n; i++) {
		if (st->hooks != NULL && st->hooks->fenced != NULL)
			st->hooks->fenced(st->hooks->arg, st->fenced[i], st->fenced_serial[i]);
		free(st->fenced[i]);
	}
}

/* The commit found group gi's session claimed elsewhere. */
static void rd_group_fenced(struct cairn_store *st, size_t gi)
{
	const struct rd_group *o = &st->owners->gv[gi];
	struct rd_owner **pp = rd_owner_find(st->owners, o->id);

	rd_log(st, CAIRN_LOG_NOTICE,
	       "session %s was claimed by another node: its writes are dropped", o->id);
	rd_fenced_add(st, o->id, o->serial);
	/* Unless it was claimed here again meanwhile (a new hold). */
	if (pp != NULL && *pp != NULL && (*pp)->gen_id == o->gen_id)
		rd_owner_drop(st->owners, o->id);
}

static void rd_commit_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	int status = 0;

	(void)privdata;
	if (!rd_link_reply(st, ac, reply, &status))
		return;
	if (reply == NULL) {
		/* status says the link went */
	} else if (reply->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < reply->elements; i++) {
			const redisReply *g = reply->element[i];
			long long k = g->type == REDIS_REPLY_INTEGER ? g->integer : 0;

			if (k >= 1 && (size_t)k <= st->owners->gn)
				rd_group_fenced(st, (size_t)k - 1);
		}
	} else {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: commit failed: %s", st->where,
		       reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		status = CAIRN_EIO;
	}
	rd_groups_clear(st->owners);
	rd_link_batch_done(st, status);
}

/* A staged command is in the Redis protocol ("*N\r\n" then "$len\r\n"
 * and the bytes per argument, as rd_format wrote it): its argument count,
 * and its arguments in place, for cairn_commit's flat argument list. */
static size_t rd_resp_argc(const char *buf)
{
	return (size_t)strtoul(buf + 1, NULL, 10);
}

static void rd_resp_args(const char *buf, size_t n, const char **argv, size_t *lens)
{
	const char *p = strchr(buf, '\n') + 1;

	for (size_t i = 0; i < n; i++) {
		char *end;
		size_t len = (size_t)strtoul(p + 1, &end, 10);

		argv[i] = end + 2;
		lens[i] = len;
		p = end + 2 + len + 2;
	}
}

/* ---- the commit on a Redis Cluster: one FCALL per master ---- */

/* One master's share of a commit: its FCALL, and its group numbers. */
struct rd_part {
	uint64_t gen;
	size_t n;
	size_t *gmap; /* local group g (from 1) -> index g - 1 ... in owners->gv */
	char *buf;    /* the formatted FCALL, until sent */
	size_t len;
	unsigned slot; /* of its first key, which routes it */
};

static void rd_part_free(struct rd_part *p)
{
	free(p->gmap);
	free(p->buf);
	free(p);
}

static void rd_part_cb(redisAsyncContext *ac, void *r, void *privdata);

static int rd_part_send(struct cairn_store *st, struct rd_part *p)
{
	if (rd_route_commit(st, p->slot, rd_part_cb, p, p->buf, p->len) != REDIS_OK)
		return REDIS_ERR;
	free(p->buf);
	p->buf = NULL;
	st->parts_pending++;
	return REDIS_OK;
}

static void rd_parts_drop_phase2(struct cairn_store *st)
{
	for (size_t i = 0; i < st->nphase2; i++)
		rd_part_free(st->phase2[i]);
	free(st->phase2);
	st->phase2 = NULL;
	st->nphase2 = 0;
}

static void rd_part_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_part *p = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	if (st == NULL || p->gen != st->commit_gen || !st->in_flight || st->parts_pending == 0) {
		rd_part_free(p);
		return;
	}
	if (reply == NULL) {
		st->parts_status = CAIRN_EUNAVAILABLE;
	} else if (reply->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < reply->elements; i++) {
			const redisReply *g = reply->element[i];
			long long k = g->type == REDIS_REPLY_INTEGER ? g->integer : 0;

			if (k >= 1 && (size_t)k <= p->n && p->gmap[k - 1] < st->owners->gn)
				rd_group_fenced(st, p->gmap[k - 1]);
		}
	} else {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: commit failed: %s", st->where,
		       reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		st->parts_status = CAIRN_EIO;
	}
	rd_part_free(p);
	if (--st->parts_pending > 0)
		return;
	/* The log's part is in: the sessions' parts may follow. */
	if (st->parts_status == 0 && st->nphase2 > 0) {
		for (size_t i = 0; i < st->nphase2; i++) {
			if (rd_part_send(st, st->phase2[i]) != REDIS_OK) {
				st->parts_status = CAIRN_EUNAVAILABLE;
				rd_part_free(st->phase2[i]);
			}
		}
		free(st->phase2);
		st->phase2 = NULL;
		st->nphase2 = 0;
		if (st->parts_pending > 0)
			return;
	}
	rd_parts_drop_phase2(st);
	evtimer_del(st->watchdog_ev);
	rd_groups_clear(st->owners);
	rd_link_batch_done(st, st->parts_status);
}

/* Whether a staged command's key is a session's inbound QoS 2 set. */
static bool rd_is_inflight_in(const char *key, size_t len)
{
	return len > 13 && memcmp(key + len - 13, "}:inflight_in", 13) == 0;
}

/* Whether a staged command removes a claimed will (rd_claim_will_done). */
static bool rd_is_will_done(const char *buf)
{
	const char *av[1];
	size_t lv[1];

	rd_resp_args(buf, 1, av, lv);
	return lv[0] == 14 && memcmp(av[0], "CAIRN.WILLDONE", 14) == 0;
}

/*
 * The batch in st->sending, its sessions numbered in owners->gv, as one
 * FCALL of cairn_commit per master (allow-cross-slot-keys: every key of
 * one call is on that master). A session's writes keep its group (its
 * claim checked in the same call); a write of another slot staged under
 * it (parking's node keys) runs unchecked. When the batch holds inbound
 * QoS 2 writes, the log's master goes first and the others once it has
 * answered: a QoS 2 id is stored only after its message (and its marker),
 * and its marker goes before the id, so a crash between the two loses
 * nothing and doubles nothing. With the log in several partitions the
 * masters of the partitions written go first, and the inbound QoS 2 ids
 * they hold go in a call of their own after them (a second part of that
 * master, numbered m + its number of masters). A failure anywhere replays
 * the whole batch, which every part bears (once-only appends, markers,
 * plain writes).
 */
static int rd_rcluster_send(struct cairn_store *st, size_t ngroups, cairn_store_done_fn done,
			    void *arg)
{
	struct rd_owners *o = st->owners;
	size_t n = st->sending.n, nm = st->map->nnodes, sent = 0;
	size_t *cm = bk_xmalloc((n + 1) * sizeof(*cm)), *cg = bk_xmalloc((n + 1) * sizeof(*cg));
	unsigned *gslot = bk_xmalloc((ngroups + 1) * sizeof(*gslot));
	size_t *loc = bk_xmalloc((ngroups + 1) * sizeof(*loc));
	uint16_t gm = rd_slot_master(st, rd_key_slot(st->log_key, strlen(st->log_key)));
	bool has_in = false, has_g = false, has_other = false, unserved = false, has_mark = false;
	bool multi = st->partitions > 1;
	/* With several partitions: whether master m holds a write in a log
	 * partition's slot (logm), whether command i writes an inbound id. */
	bool *logm = bk_xcalloc(nm + 1, sizeof(*logm)), *isin = bk_xcalloc(n + 1, sizeof(*isin));
	unsigned *lslot = bk_xmalloc(st->partitions * sizeof(*lslot));
	size_t np = multi ? 2 * nm : nm;
	struct rd_part **parts = bk_xcalloc(np, sizeof(*parts));

	for (uint32_t p = 0; p < st->partitions; p++)
		lslot[p] = rd_key_slot(st->log_keys[p], strlen(st->log_keys[p]));
	int rc = CAIRN_EINPROGRESS;

	for (size_t g = 0; g < ngroups; g++) {
		char *own = rd_key(st, "own", o->gv[g].id);

		gslot[g + 1] = rd_key_slot(own, strlen(own));
		free(own);
	}
	for (size_t i = 0; i < n; i++) {
		const struct rd_cmd *c = &st->sending.v[i];
		const char *av[RD_MAX_ARGS];
		size_t lv[RD_MAX_ARGS], argc = rd_resp_argc(c->buf);
		unsigned slot;

		cm[i] = SIZE_MAX;
		if (argc < 2)
			continue;
		cg[i] = 0;
		if (c->owner != NULL) {
			struct rd_owner **pp = rd_owner_find(o, c->owner);

			if (pp == NULL || *pp == NULL || (*pp)->gen_id != c->hold)
				continue;
			cg[i] = (*pp)->group;
		}
		/* Only the first two arguments are wanted here. */
		rd_resp_args(c->buf, 2, av, lv);
		if (lv[1] == strlen(st->mark_key) && memcmp(av[1], st->mark_key, lv[1]) == 0 &&
		    argc == 3) {
			/* The mark: copied into every master's call below. */
			const char *mv[3];
			size_t ml[3];

			rd_resp_args(c->buf, 3, mv, ml);
			free(st->mark_sent);
			st->mark_sent = bk_xstrndup(mv[2], ml[2]);
			has_mark = true;
			continue;
		}
		slot = rd_key_slot(av[1], lv[1]);
		if (cg[i] > 0 && gslot[cg[i]] != slot)
			cg[i] = 0;
		cm[i] = rd_slot_master(st, slot);
		if (cm[i] == RD_NO_NODE) {
			/* The map says no master serves it (a failover in
			 * progress when it was read): read it again. */
			unserved = true;
			rd_route_refresh(st, NULL);
			break;
		}
		isin[i] = rd_is_inflight_in(av[1], lv[1]);
		has_in = has_in || isin[i];
		if (cm[i] == gm)
			has_g = true;
		else
			has_other = true;
		for (uint32_t p = 0; multi && p < st->partitions; p++)
			if (lslot[p] == slot)
				logm[cm[i]] = true;
	}
	/* A session whose claimed will the batch removes: its writes (the
	 * removal, its new record) wait for the will's append, as inbound ids
	 * do for their message, so a node that dies between the two leaves
	 * the will in the store. */
	bool *willg = bk_xcalloc(ngroups + 1, sizeof(*willg));

	for (size_t i = 0; !unserved && i < n; i++)
		if (cm[i] != SIZE_MAX && cg[i] > 0 && rd_is_will_done(st->sending.v[i].buf))
			willg[cg[i]] = true;
	for (size_t i = 0; !unserved && i < n; i++)
		if (cm[i] != SIZE_MAX && cg[i] > 0 && willg[cg[i]]) {
			isin[i] = true;
			has_in = true;
		}
	free(willg);
	/* Several partitions: the inbound ids on the masters that go first
	 * wait for them, in a part of their own. */
	for (size_t i = 0; multi && has_in && !unserved && i < n; i++)
		if (cm[i] != SIZE_MAX && isin[i] && logm[cm[i]])
			cm[i] += nm;
	for (size_t m = 0; !unserved && m < np; m++) {
		size_t nl = 0, nargs = 5, argc = 0, nowned = 0, first = SIZE_MAX;
		char *marks;
		const char **argv;
		size_t *lens, *gmap;
		char **owned;
		struct rd_part *p;
		int len;
		char *buf = NULL;

		memset(loc, 0, (ngroups + 1) * sizeof(*loc));
		gmap = bk_xmalloc((ngroups + 1) * sizeof(*gmap));
		for (size_t i = 0; i < n; i++) {
			if (cm[i] != m)
				continue;
			if (first == SIZE_MAX)
				first = i;
			nargs += 2 + rd_resp_argc(st->sending.v[i].buf);
			if (cg[i] > 0 && loc[cg[i]] == 0) {
				loc[cg[i]] = ++nl;
				gmap[nl - 1] = cg[i] - 1;
			}
		}
		/* A batch with a mark writes it on every master; one without,
		 * the last mark sent on each master it writes to (a master's
		 * second part writes none). */
		marks = st->mark_sent != NULL && m < nm ? rd_marks_key(st, (uint16_t)m) : NULL;
		if (first == SIZE_MAX && (!has_mark || marks == NULL)) {
			free(marks);
			free(gmap);
			continue;
		}
		nargs += 1 + nl + 6;
		argv = bk_xmalloc(nargs * sizeof(*argv));
		lens = bk_xmalloc(nargs * sizeof(*lens));
		owned = bk_xmalloc((nl + 2 * n + 2) * sizeof(*owned));
		argv[argc++] = "FCALL";
		argv[argc++] = "cairn_commit";
		argv[argc++] = "1";
		if (first != SIZE_MAX) {
			rd_resp_args(st->sending.v[first].buf, 2, argv + argc, lens + argc);
			argv[argc] = argv[argc + 1];
			lens[argc] = lens[argc + 1];
		} else {
			argv[argc] = marks;
			lens[argc] = strlen(marks);
		}
		argc++;
		for (size_t i = 0; i < argc; i++)
			if (i != 3)
				lens[i] = strlen(argv[i]);
		argv[argc] = st->inc_s;
		lens[argc++] = strlen(st->inc_s);
		owned[nowned] = bk_strf("%zu", nl);
		lens[argc] = strlen(owned[nowned]);
		argv[argc++] = owned[nowned++];
		for (size_t g = 0; g < nl; g++) {
			owned[nowned] = rd_key(st, "own", o->gv[gmap[g]].id);
			lens[argc] = strlen(owned[nowned]);
			argv[argc++] = owned[nowned++];
		}
		for (size_t i = 0; i < n; i++) {
			size_t k;

			if (cm[i] != m)
				continue;
			k = rd_resp_argc(st->sending.v[i].buf);
			owned[nowned] = bk_strf("%zu", cg[i] > 0 ? loc[cg[i]] : 0);
			lens[argc] = strlen(owned[nowned]);
			argv[argc++] = owned[nowned++];
			owned[nowned] = bk_strf("%zu", k);
			lens[argc] = strlen(owned[nowned]);
			argv[argc++] = owned[nowned++];
			rd_resp_args(st->sending.v[i].buf, k, argv + argc, lens + argc);
			argc += k;
		}
		if (marks != NULL) {
			const char *hset[] = {"0", "4", "HSET", marks, st->inc_s, st->mark_sent};

			for (size_t k = 0; k < 6; k++) {
				argv[argc] = hset[k];
				lens[argc++] = strlen(hset[k]);
			}
		}
		len = redisFormatCommandArgv(&buf, (int)argc, argv, lens);
		p = bk_xcalloc(1, sizeof(*p));
		p->n = nl;
		p->gmap = gmap;
		p->slot = rd_key_slot(argv[3], lens[3]);
		p->buf = bk_xmemdup(buf, (size_t)len);
		p->len = (size_t)len;
		redisFreeCommand(buf);
		for (size_t i = 0; i < nowned; i++)
			free(owned[i]);
		free(owned);
		free(argv);
		free(lens);
		free(marks);
		parts[m] = p;
	}
	st->commit_gen++;
	st->parts_pending = 0;
	st->parts_status = 0;
	rd_parts_drop_phase2(st);
	if (!unserved) {
		bool two = has_in && has_g && has_other, anylog = false;

		for (size_t m = 0; multi && m < nm; m++)
			anylog = anylog || logm[m];
		if (multi)
			two = has_in && anylog;
		for (size_t m = 0; m < np; m++) {
			struct rd_part *p = parts[m];

			if (p == NULL)
				continue;
			p->gen = st->commit_gen;
			if (two && (multi ? m >= nm || !logm[m] : m != gm)) {
				st->phase2 = bk_xrealloc(st->phase2,
							 (st->nphase2 + 1) * sizeof(*st->phase2));
				st->phase2[st->nphase2++] = p;
			} else if (rd_part_send(st, p) == REDIS_OK) {
				sent++;
			} else {
				st->parts_status = CAIRN_EUNAVAILABLE;
				rd_part_free(p);
			}
		}
	} else {
		for (size_t m = 0; m < np; m++)
			if (parts[m] != NULL)
				rd_part_free(parts[m]);
	}
	if (sent == 0 && !unserved && st->parts_status == 0 && st->nphase2 == 0) {
		/* Nothing to write (every write dropped): done at once. */
		rd_groups_clear(o);
		rd_link_started(st, done, arg);
		rd_link_finish(st, 0);
	} else if (sent == 0) {
		/* Nothing went out: the batch waits for the next commit. */
		rd_parts_drop_phase2(st);
		rd_groups_clear(o);
		rd_batch_requeue(&st->sending, &st->staged);
		rc = CAIRN_EUNAVAILABLE;
	} else {
		rd_link_started(st, done, arg);
	}
	free(parts);
	free(cm);
	free(cg);
	free(gslot);
	free(loc);
	free(logm);
	free(isin);
	free(lslot);
	return rc;
}

/*
 * One FCALL of cairn_commit for the whole batch. The session of each
 * command is looked up now: a session released since its write was staged
 * (kicked, fenced) has its writes dropped here.
 */
int rd_cluster_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	struct rd_batch tmp = st->sending;
	struct rd_owners *o = st->owners;
	size_t ngroups = 0, nargs, argc = 0;
	const char **argv;
	size_t *lens;
	char **owned; /* the own keys, tokens and group numbers formatted here */
	size_t nowned = 0;
	int rc;

	st->sending = st->staged;
	st->staged = tmp;
	st->routed_at = 0;
	o->gen++;
	rd_groups_clear(o);
	for (size_t i = 0; i < st->sending.n; i++) {
		struct rd_owner **pp;

		if (st->sending.v[i].owner == NULL)
			continue;
		pp = rd_owner_find(o, st->sending.v[i].owner);
		if (pp == NULL || *pp == NULL || (*pp)->gen == o->gen ||
		    (*pp)->gen_id != st->sending.v[i].hold)
			continue;
		(*pp)->gen = o->gen;
		(*pp)->group = ++ngroups;
		if (o->gn == o->gcap) {
			o->gcap = o->gcap ? o->gcap * 2 : 64;
			o->gv = bk_xrealloc(o->gv, o->gcap * sizeof(*o->gv));
		}
		o->gv[o->gn].id = bk_xstrdup((*pp)->id);
		o->gv[o->gn].serial = (*pp)->serial;
		o->gv[o->gn].gen_id = (*pp)->gen_id;
		o->gn++;
	}
	if (st->rcluster)
		return rd_rcluster_send(st, ngroups, done, arg);
	nargs = 5 + ngroups;
	for (size_t i = 0; i < st->sending.n; i++)
		nargs += 2 + rd_resp_argc(st->sending.v[i].buf);
	argv = bk_xmalloc(nargs * sizeof(*argv));
	lens = bk_xmalloc(nargs * sizeof(*lens));
	owned = bk_xmalloc((ngroups + 2 * st->sending.n + 1) * sizeof(*owned));
	argv[argc++] = "FCALL";
	argv[argc++] = "cairn_commit";
	argv[argc++] = "0";
	argv[argc++] = st->inc_s;
	owned[nowned] = bk_strf("%zu", ngroups);
	argv[argc++] = owned[nowned++];
	for (size_t g = 0; g < ngroups; g++) {
		owned[nowned] = rd_key(st, "own", o->gv[g].id);
		argv[argc++] = owned[nowned++];
	}
	for (size_t i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	for (size_t i = 0; i < st->sending.n; i++) {
		const struct rd_cmd *c = &st->sending.v[i];
		size_t group = 0;

		if (c->owner != NULL) {
			struct rd_owner **pp = rd_owner_find(o, c->owner);

			/* Released, or staged under a hold that ended: not ours
			 * to write. */
			if (pp == NULL || *pp == NULL || (*pp)->gen_id != c->hold)
				continue;
			group = (*pp)->group;
		}
		size_t n = rd_resp_argc(c->buf);

		owned[nowned] = bk_strf("%zu", group);
		lens[argc] = strlen(owned[nowned]);
		argv[argc++] = owned[nowned++];
		owned[nowned] = bk_strf("%zu", n);
		lens[argc] = strlen(owned[nowned]);
		argv[argc++] = owned[nowned++];
		rd_resp_args(c->buf, n, argv + argc, lens + argc);
		argc += n;
	}
	rc = rd_link_send_one(st, (int)argc, argv, lens, rd_commit_cb, done, arg);
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(argv);
	free(lens);
	if (rc != CAIRN_EINPROGRESS)
		rd_groups_clear(o);
	return rc;
}

/* ---- log entries ---- */

/* Decode one entry [id, [field, value, ...]] into e (borrowing the reply's
 * strings). False when it is not one of ours. */
static bool rd_entry_parse(const redisReply *r, struct cairn_log_entry *e)
{
	const redisReply *f;
	uint64_t q = 0, rt = 0;
	bool topic = false;

	memset(e, 0, sizeof(*e));
	e->publisher = "";
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
	    !rd_pos_parse(r->element[0]->str, r->element[0]->len, &e->pos))
		return false;
	f = r->element[1];
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
			return false;
		switch (k->str[0]) {
		case 't':
			e->msg.topic = v->str;
			topic = v->len > 0;
			break;
		case 'p':
			e->msg.payload = (const uint8_t *)v->str;
			e->msg.payload_len = (uint32_t)v->len;
			break;
		case 'q':
			if (!rd_parse_u64(v->str, v->len, 2, &q))
				return false;
			break;
		case 'r':
			if (!rd_parse_u64(v->str, v->len, 1, &rt))
				return false;
			break;
		case 'x':
			if (!rd_parse_i64(v->str, v->len, &e->msg.expires_at))
				return false;
			break;
		case 'o':
			e->msg.props = v->len > 0 ? (const uint8_t *)v->str : NULL;
			e->msg.props_len = (uint32_t)v->len;
			break;
		case 'f':
			e->publisher = v->str;
			break;
		default:
			break;
		}
	}
	if (!topic)
		return false;
	if (e->msg.payload == NULL)
		e->msg.payload = (const uint8_t *)"";
	e->msg.qos = (uint8_t)q;
	e->msg.retain = rt != 0;
	return true;
}

/* Decode the entries of an XRANGE reply (or one stream of an XREAD's)
 * of partition part into a new array; *last is the position of the last,
 * whether decoded or skipped. */
struct cairn_log_entry *rd_entries_parse(struct cairn_store *st, const redisReply *list,
					 uint32_t part, size_t *n, struct cairn_log_pos *last)
{
	struct cairn_log_entry *e = bk_xmalloc((list->elements + 1) * sizeof(*e));

	*n = 0;
	for (size_t i = 0; i < list->elements; i++) {
		if (rd_entry_parse(list->element[i], &e[*n])) {
			e[*n].partition = part;
			*last = e[*n].pos;
			(*n)++;
		} else {
			const redisReply *r = list->element[i];

			rd_log(st, CAIRN_LOG_WARNING,
			       "redis at %s: log entry %s skipped: not cairn's", st->where,
			       r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
				       r->element[0]->type == REDIS_REPLY_STRING
				   ? r->element[0]->str
				   : "?");
			if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
			    r->element[0]->type == REDIS_REPLY_STRING)
				rd_pos_parse(r->element[0]->str, r->element[0]->len, last);
		}
	}
	return e;
}

/* ---- the reader and the kick subscriber ---- */

static void rd_aux_connect(struct rd_aux *a);

static void rd_aux_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rd_aux_connect(arg);
}

static void rd_aux_gone(struct rd_aux *a, const redisAsyncContext *ac, const char *why)
{
	struct timeval tv = {1, 0};

	if (a->ac != ac)
		return;
	a->ac = NULL;
	if (!a->lost) {
		a->lost = true;
		rd_log(a->st, CAIRN_LOG_WARNING,
		       "redis at %s: %s connection lost (%s); reconnecting", a->st->where,
		       a->reader ? "log reader" : "control", why);
	}
	evtimer_add(a->retry, &tv);
}

static void rd_aux_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct rd_aux *a = ac->data;

	(void)status;
	if (a != NULL)
		rd_aux_gone(a, ac, ac->errstr[0] ? ac->errstr : "closed");
}

static void rd_aux_connect_cb(const redisAsyncContext *ac, int status)
{
	struct rd_aux *a = ac->data;

	if (a == NULL)
		return;
	if (status != REDIS_OK) {
		rd_aux_gone(a, ac, ac->errstr[0] ? ac->errstr : "connect failed");
		return;
	}
	if (a->lost) {
		a->lost = false;
		rd_log(a->st, CAIRN_LOG_NOTICE, "redis at %s: %s connection restored", a->st->where,
		       a->reader ? "log reader" : "control");
	}
}

static void rd_read_next(struct rd_aux *a);

static void rd_read_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_aux *a = ac->data;
	redisReply *reply = r;

	(void)privdata;
	if (a == NULL || reply == NULL)
		return; /* the link went: the disconnect callback retries */
	if (reply->type == REDIS_REPLY_ERROR) {
		struct timeval tv = {1, 0};

		if (a->st->rcluster && rd_route_moved(a->st, reply->str, reply->len)) {
			/* The log's slot moved: read from its new master. */
			redisAsyncDisconnect(ac);
			return;
		}
		rd_log(a->st, CAIRN_LOG_ERROR, "redis at %s: XREAD of the log failed: %s",
		       a->st->where, reply->str);
		evtimer_add(a->retry, &tv); /* the retry reads again */
		return;
	}
	/* nil: the block timed out. Else [[key, [entries]]]. */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
	    reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2 &&
	    reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
		struct cairn_store *st = a->st;
		size_t n;
		struct cairn_log_pos last = st->read_pos[a->part];
		struct cairn_log_entry *e =
		    rd_entries_parse(st, reply->element[0]->element[1], a->part, &n, &last);

		st->read_pos[a->part] = last;
		if (n > 0 && st->hooks != NULL && st->hooks->entries != NULL)
			st->hooks->entries(st->hooks->arg, e, n);
		free(e);
	}
	rd_read_next(a);
}

static void rd_read_next(struct rd_aux *a)
{
	char pos[48];
	const char *argv[] = {
	    "XREAD", "COUNT", RD_LOG_COUNT, "BLOCK", "1000", "STREAMS", a->st->log_keys[a->part],
	    pos};

	rd_pos_format(pos, a->st->read_pos[a->part]);
	if (a->ac != NULL)
		redisAsyncCommandArgv(a->ac, rd_read_cb, NULL, 8, argv, NULL);
}

/* The record of the will a claim left incarnation inc for client id
 * (defer_will): {c:ID}:tw:INC. */
static char *rd_tw_key(const struct cairn_store *st, const char *id, const char *inc)
{
	char *base = rd_key(st, "own", id);
	char *rec = bk_strf("%.*stw:%s", (int)(strlen(base) - 3), base, inc);

	free(base);
	return rec;
}

/*
 * After the hook of a kick that left this node a will (defer_will): the
 * record goes from the store, with the core's append of the will if it
 * published it (staged, in the same commit: on one server in the same
 * call), else at once (the will was discarded, or not held any more).
 */
static void rd_kick_will_done(struct cairn_store *st, const char *id)
{
	char *rec = rd_tw_key(st, id, st->inc_s);
	char *set = rd_node_key(st, st->inc_s, "tw");
	const char *del[] = {"DEL", rec};
	const char *srem[] = {"SREM", set, id};

	if (st->kick_will_used) {
		const char *owner = st->stage_owner;

		st->stage_owner = NULL;
		if (rd_stage(st, 2, del, NULL) != 0 || rd_stage(st, 3, srem, NULL) != 0)
			rd_log(st, CAIRN_LOG_ERROR,
			       "redis at %s: session %s: cannot stage the removal of its will's "
			       "record",
			       st->where, id);
		st->stage_owner = owner;
	} else if (st->rcluster) {
		if (rd_route_argv(st, rec, strlen(rec), NULL, NULL, 2, del, NULL) != REDIS_OK ||
		    rd_route_argv(st, set, strlen(set), NULL, NULL, 3, srem, NULL) != REDIS_OK)
			rd_log(st, CAIRN_LOG_ERROR,
			       "redis at %s: session %s: cannot remove its will's record",
			       st->where, id);
	} else if (redisAsyncCommandArgv(st->ac, NULL, NULL, 2, del, NULL) != REDIS_OK ||
		   redisAsyncCommandArgv(st->ac, NULL, NULL, 3, srem, NULL) != REDIS_OK) {
		rd_log(st, CAIRN_LOG_ERROR,
		       "redis at %s: session %s: cannot remove its will's record", st->where, id);
	}
	free(rec);
	free(set);
}

/*
 * A kick of the connection this node holds id under serial: the hold goes
 * (unless a newer claim here holds it: a reconnect to this node), the core
 * hears of it, and with will (the claim left the connection's will here,
 * named ep) the core publishes the will if it still holds it, and the
 * record goes (rd_kick_will_done).
 */
static void rd_kick(struct cairn_store *st, const char *id, uint64_t serial, bool will, uint64_t ep)
{
	struct rd_owner **pp = rd_owner_find(st->owners, id);

	if (pp != NULL && *pp != NULL && (*pp)->serial == serial)
		rd_owner_drop(st->owners, id);
	st->kick_will_ep = will ? ep : 0;
	st->kick_will_id = will ? id : NULL;
	st->kick_will_used = false;
	if (st->hooks != NULL && st->hooks->kicked != NULL)
		st->hooks->kicked(st->hooks->arg, id, serial | (will ? CAIRN_KICK_WILL : 0));
	if (will)
		rd_kick_will_done(st, id);
	st->kick_will_id = NULL;
}

/* A kick sent while the control connection was down is lost: once it is
 * subscribed (again), every session held here is checked against its
 * token, and one another node holds now is reported as kicked; if the
 * claim left this node the connection's will (its record names the
 * hold's epoch), as the flagged kick would have (rd_check_will_cb). */
struct rd_check {
	struct cairn_store *st;
	char *id;
	uint64_t serial;
	uint64_t epoch; /* the hold's claim epoch (the name of its will) */
};

static void rd_check_free(struct rd_check *k)
{
	free(k->id);
	free(k);
}

/* Whether the hold checked is still this node's, as it was. */
static bool rd_check_held(const struct rd_check *k)
{
	struct rd_owner **pp = rd_owner_find(k->st->owners, k->id);

	return pp != NULL && *pp != NULL && (*pp)->serial == k->serial;
}

static void rd_check_will_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_check *k = privdata;
	redisReply *reply = r;
	uint64_t ep = 0;

	/* A reply lost (the link went): the next subscription checks again. */
	if (ac->data != NULL && reply != NULL && reply->type != REDIS_REPLY_ERROR &&
	    rd_check_held(k)) {
		bool will = reply->type == REDIS_REPLY_STRING &&
			    rd_parse_u64(reply->str, reply->len, UINT64_MAX, &ep) &&
			    ep == k->epoch && ep > 0;

		rd_kick(k->st, k->id, k->serial, will, ep);
	}
	rd_check_free(k);
}

static void rd_check_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_check *k = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	if (st != NULL && reply != NULL && reply->type != REDIS_REPLY_ERROR) {
		const char *colon =
		    reply->type == REDIS_REPLY_STRING ? memchr(reply->str, ':', reply->len) : NULL;
		bool mine = colon != NULL && (size_t)(colon - reply->str) == strlen(st->inc_s) &&
			    memcmp(reply->str, st->inc_s, strlen(st->inc_s)) == 0;

		if (!mine && rd_check_held(k)) {
			/* Taken: the claim may have left the will here. */
			char *rec = rd_tw_key(st, k->id, st->inc_s);
			const char *argv[] = {"HGET", rec, "will_ep"};
			int rc = st->rcluster ? rd_route_argv(st, rec, strlen(rec),
							      rd_check_will_cb, k, 3, argv, NULL)
					      : redisAsyncCommandArgv(st->ac, rd_check_will_cb, k,
								      3, argv, NULL);

			free(rec);
			if (rc == REDIS_OK)
				return;
			rd_kick(st, k->id, k->serial, false, 0);
		}
	}
	rd_check_free(k);
}

static void rd_reconcile(struct cairn_store *st)
{
	struct rd_owners *o = st->owners;

	if (st->ac == NULL || st->ac_broken)
		return;
	for (size_t i = 0; i < o->nb; i++)
		for (struct rd_owner *e = o->b[i]; e != NULL; e = e->next) {
			struct rd_check *k = bk_xcalloc(1, sizeof(*k));
			char *key = rd_key(st, "own", e->id);
			const char *argv[] = {"HGET", key, "tok"};

			k->st = st;
			k->id = bk_xstrdup(e->id);
			k->serial = e->serial;
			k->epoch = e->epoch;
			if ((st->rcluster ? rd_route_argv(st, key, strlen(key), rd_check_cb, k, 3,
							  argv, NULL)
					  : redisAsyncCommandArgv(st->ac, rd_check_cb, k, 3, argv,
								  NULL)) != REDIS_OK)
				rd_check_free(k);
			free(key);
		}
}

static void rd_control_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_aux *a = ac->data;
	redisReply *reply = r;
	const redisReply *msg;
	const char *nl, *colon;
	uint64_t serial;

	(void)privdata;
	if (a == NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
		return;
	if (reply->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(reply->element[0]->str, "subscribe") == 0) {
		rd_reconcile(a->st);
		return;
	}
	if (reply->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(reply->element[0]->str, "message") != 0)
		return;
	/* "ID\nINC:SERIAL": the claim that took ID from this incarnation;
	 * ":w" after it: the claim left the connection's will here
	 * (defer_will). */
	msg = reply->element[2];
	if (msg->type != REDIS_REPLY_STRING)
		return;
	size_t len = msg->len;
	bool will = len > 2 && memcmp(msg->str + len - 2, ":w", 2) == 0;

	if (will)
		len -= 2;
	if ((nl = memrchr(msg->str, '\n', len)) == NULL ||
	    (colon = memchr(nl, ':', len - (size_t)(nl - msg->str))) == NULL ||
	    !rd_parse_u64(colon + 1, len - (size_t)(colon + 1 - msg->str), UINT64_MAX, &serial) ||
	    serial >= CAIRN_KICK_WILL)
		return;
	if ((size_t)(colon - nl - 1) != strlen(a->st->inc_s) ||
	    memcmp(nl + 1, a->st->inc_s, (size_t)(colon - nl - 1)) != 0)
		return;
	char *id = bk_xstrndup(msg->str, (size_t)(nl - msg->str));
	struct cairn_store *st = a->st;
	struct rd_owner **pp = rd_owner_find(st->owners, id);
	const struct rd_owner *o = pp != NULL ? *pp : NULL;

	/* The will's name: the epoch of the claim the connection was held
	 * under (will_ep), read before the owner goes. A newer claim here (a
	 * reconnect to this node) keeps the session (rd_kick). */
	rd_kick(st, id, serial, will,
		o == NULL                  ? 0
		: o->serial == serial      ? o->epoch
		: o->prev_serial == serial ? o->prev_epoch
					   : 0);
	free(id);
}

static void rd_aux_setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_aux *a = ac->data;
	redisReply *reply = r;

	if (a != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(a->st, CAIRN_LOG_ERROR, "redis at %s: %s refused: %s", a->st->where,
		       (const char *)privdata, reply->str);
}

static void rd_aux_connect(struct rd_aux *a)
{
	struct cairn_store *st = a->st;
	redisAsyncContext *ac;
	struct timeval tv = {1, 0};

	if (a->ac != NULL)
		return;
	if (st->rcluster && a->reader) {
		/* The master of its partition of the log. */
		const struct rd_slot_node *n = rd_route_node(st, st->log_keys[a->part]);

		ac = n != NULL ? redisAsyncConnect(n->host, n->port) : NULL;
	} else {
		ac = st->unix_path != NULL ? redisAsyncConnectUnix(st->unix_path)
					   : redisAsyncConnect(st->host, st->port);
	}
	if (ac == NULL || ac->err || redisLibeventAttach(ac, st->base) != REDIS_OK) {
		if (ac != NULL)
			redisAsyncFree(ac);
		evtimer_add(a->retry, &tv);
		return;
	}
	ac->data = a;
	redisEnableKeepAlive(&ac->c);
	redisAsyncSetConnectCallback(ac, rd_aux_connect_cb);
	redisAsyncSetDisconnectCallback(ac, rd_aux_disconnect_cb);
	a->ac = ac;
	if (st->password != NULL) {
		const char *argv[] = {"AUTH", st->password};

		redisAsyncCommandArgv(ac, rd_aux_setup_cb, "AUTH", 2, argv, NULL);
	}
	if (st->db != 0) {
		char dbs[16];
		const char *argv[] = {"SELECT", dbs};

		snprintf(dbs, sizeof(dbs), "%d", st->db);
		redisAsyncCommandArgv(ac, rd_aux_setup_cb, "SELECT", 2, argv, NULL);
	}
	if (a->reader) {
		rd_read_next(a);
	} else {
		char *chan = bk_strf("%sctl:%s", st->prefix, st->inc_s);
		const char *argv[] = {"SUBSCRIBE", chan};

		redisAsyncCommandArgv(ac, rd_control_cb, NULL, 2, argv, NULL);
		free(chan);
	}
}

static void rd_aux_retry_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rd_aux *a = arg;

	(void)fd;
	(void)what;
	if (a->ac == NULL)
		rd_aux_connect(a);
	else if (a->reader)
		rd_read_next(a); /* after an XREAD error */
}

static struct rd_aux *rd_aux_new(struct cairn_store *st, bool reader, uint32_t part)
{
	struct rd_aux *a = bk_xcalloc(1, sizeof(*a));

	a->st = st;
	a->reader = reader;
	a->part = part;
	a->retry = evtimer_new(st->base, reader ? rd_aux_retry_read_cb : rd_aux_retry_cb, a);
	if (a->retry == NULL) {
		free(a);
		return NULL;
	}
	rd_aux_connect(a);
	return a;
}

/* ---- liveness and the janitor ---- */

/* Whether the core lets client id's will to topic go out (the hook). */
static bool rd_will_allowed(struct cairn_store *st, const char *id, const char *username,
			    const char *topic)
{
	const struct cairn_cluster_hooks *h = st->hooks;

	return h == NULL || h->will_allowed == NULL || h->will_allowed(h->arg, id, username, topic);
}

static void rd_will_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	char *id = privdata;

	if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: the will of %s failed: %s", st->where, id,
		       reply->str);
	else if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
		 reply->integer > 0)
		rd_log(st, CAIRN_LOG_NOTICE, "cluster janitor: the will of %s published", id);
	free(id);
}

/* One will the janitor found due: {id, epoch, topic, has username,
 * username}. */
static void rd_janitor_will(struct cairn_store *st, const redisReply *w)
{
	char ms[24];

	if (w->type != REDIS_REPLY_ARRAY || w->elements != 5)
		return;
	for (size_t k = 0; k < 5; k++)
		if (w->element[k]->type != REDIS_REPLY_STRING)
			return;
	const char *id = w->element[0]->str;
	const char *user = w->element[3]->str[0] == '1' ? w->element[4]->str : NULL;
	bool ok = rd_will_allowed(st, id, user, w->element[2]->str);
	/* The will goes to its topic's partition of the log. */
	char *g = rd_cluster_part_key(st, "", rd_log_partition(w->element[2]->str, st->partitions));
	const char *argv[] = {"FCALL",        "cairn_will", "0", st->prefix, id, w->element[1]->str,
			      ok ? "1" : "0", ms,           g};
	char *arg = bk_xstrdup(id);

	rd_i64(ms, rd_wall_ms());
	if (redisAsyncCommandArgv(st->ac, rd_will_cb, arg, 9, argv, NULL) != REDIS_OK)
		free(arg);
	free(g);
}

static void rd_janitor_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	(void)privdata;
	if (st == NULL || reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: janitor failed: %s", st->where,
		       reply->str);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY)
		return;
	if (reply->element[0]->integer > 0 || reply->element[2]->integer > 0)
		rd_log(st, CAIRN_LOG_NOTICE,
		       "cluster janitor: %lld sessions of departed nodes parked, %lld parked "
		       "sessions expired",
		       reply->element[0]->integer, reply->element[2]->integer);
	/* The wills due: each goes out, or is dropped, in a call of its own
	 * that checks the session is still parked at the epoch read. */
	const redisReply *due = reply->element[1];

	for (size_t i = 0; i < due->elements; i++)
		rd_janitor_will(st, due->element[i]);
}

/*
 * The janitor on a Redis Cluster, in three steps: janitor_g in the log's
 * slot (the lease, the departed incarnations and their sessions, the
 * deadlines that came), janitor_s in each of those sessions' slots (park,
 * or take the will, or expire), then in the log's slot the deadlines of
 * the sessions parked and the wills taken (wills_g, once per session
 * epoch). A node that dies between the steps leaves those sessions to the
 * next claim (which publishes a will due at once) or loses a deadline; a
 * will a claim left to a departed node stays in its record, and listed,
 * until wills_g has answered (rd_rjanitor_tw_done), for the next round.
 */
struct rd_janitor {
	size_t pending;
	long long parked, expired;
	char **zadd; /* triples: key, score, id */
	size_t nzadd;
	char **wills; /* 7 per will: id, name, topic, payload, qos, retain, props */
	size_t *wlens;
	char **wtw; /* per will: the departed incarnation it was left to, or NULL */
	size_t nwills;
	char **dead; /* the departed incarnations, whose marks go at the end */
	size_t ndead;
};

struct rd_jcall {
	char *id;
	bool expire;
	char *tw; /* "tw": the departed incarnation the will was left to */
};

static void rd_jcall_free(struct rd_jcall *jc)
{
	free(jc->id);
	free(jc->tw);
	free(jc);
}

static void rd_janitor_free(struct rd_janitor *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < 3 * j->nzadd; i++)
		free(j->zadd[i]);
	for (size_t i = 0; i < 7 * j->nwills; i++)
		free(j->wills[i]);
	for (size_t i = 0; i < j->nwills; i++)
		free(j->wtw[i]);
	free(j->wtw);
	for (size_t i = 0; i < j->ndead; i++)
		free(j->dead[i]);
	free(j->dead);
	free(j->zadd);
	free(j->wills);
	free(j->wlens);
	free(j);
}

/* A will a claim left to a departed incarnation (defer_will), done with
 * (appended, or dropped): its record goes, then its entry in that node's
 * list, so a janitor that dies in between leaves an entry whose record is
 * gone, which the next round drops. */
struct rd_tw_done {
	char *id, *inc;
};

static void rd_tw_done_free(struct rd_tw_done *d)
{
	free(d->id);
	free(d->inc);
	free(d);
}

static void rd_tw_del_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_tw_done *d = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
		char *set = rd_node_key(st, d->inc, "tw");
		const char *srem[] = {"SREM", set, d->id};

		rd_route_argv(st, set, strlen(set), NULL, NULL, 3, srem, NULL);
		free(set);
	}
	rd_tw_done_free(d);
}

static void rd_rjanitor_tw_done(struct cairn_store *st, const char *id, const char *inc)
{
	struct rd_tw_done *d = bk_xcalloc(1, sizeof(*d));
	char *rec = rd_tw_key(st, id, inc);
	const char *del[] = {"DEL", rec};

	d->id = bk_xstrdup(id);
	d->inc = bk_xstrdup(inc);
	if (rd_route_argv(st, rec, strlen(rec), rd_tw_del_cb, d, 2, del, NULL) != REDIS_OK)
		rd_tw_done_free(d);
	free(rec);
}

/* The left wills (id, incarnation pairs) of one wills_g call. */
struct rd_wills_tw {
	char **v;
	size_t n;
};

static void rd_wills_tw_free(struct rd_wills_tw *tw)
{
	for (size_t i = 0; i < 2 * tw->n; i++)
		free(tw->v[i]);
	free(tw->v);
	free(tw);
}

static void rd_wills_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	struct rd_wills_tw *tw = privdata;

	if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: janitor's wills failed: %s", st->where,
		       reply->str);
	else if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
		 reply->integer > 0)
		rd_log(st, CAIRN_LOG_NOTICE, "cluster janitor: %lld wills published",
		       reply->integer);
	/* Appended (or appended before, by their markers): their records go. */
	for (size_t i = 0;
	     st != NULL && reply != NULL && reply->type == REDIS_REPLY_INTEGER && i < tw->n; i++)
		rd_rjanitor_tw_done(st, tw->v[2 * i], tw->v[2 * i + 1]);
	rd_wills_tw_free(tw);
}

/* The last step: deadlines and wills, in the log's slot. */
static void rd_rjanitor_end(struct cairn_store *st)
{
	struct rd_janitor *j = st->janitor;

	if (j->parked > 0 || j->expired > 0)
		rd_log(st, CAIRN_LOG_NOTICE,
		       "cluster janitor: %lld sessions of departed nodes parked, %lld parked "
		       "sessions expired",
		       j->parked, j->expired);
	for (size_t i = 0; i < j->nzadd; i++) {
		const char *argv[] = {"ZADD", j->zadd[3 * i], j->zadd[3 * i + 1],
				      j->zadd[3 * i + 2]};

		rd_route_argv(st, argv[1], strlen(argv[1]), NULL, NULL, 4, argv, NULL);
	}
	/* Their sessions are parked or held elsewhere: their marks go. */
	for (size_t m = 0; j->ndead > 0 && m < st->map->nnodes; m++) {
		char *marks = rd_marks_key(st, (uint16_t)m);
		const char **argv;

		if (marks == NULL)
			continue;
		argv = bk_xmalloc((j->ndead + 2) * sizeof(*argv));
		argv[0] = "HDEL";
		argv[1] = marks;
		for (size_t i = 0; i < j->ndead; i++)
			argv[2 + i] = j->dead[i];
		rd_route_argv(st, marks, strlen(marks), NULL, NULL, (int)j->ndead + 2, argv, NULL);
		free(argv);
		free(marks);
	}
	/* The wills, one call per partition of the log their topics go to. */
	for (uint32_t p = 0; j->nwills > 0 && p < st->partitions; p++) {
		size_t n = 5;
		const char **argv = bk_xmalloc((5 + 7 * j->nwills) * sizeof(*argv));
		size_t *lens = bk_xmalloc((5 + 7 * j->nwills) * sizeof(*lens));
		char *g = rd_cluster_part_key(st, "", p);

		argv[0] = "FCALL";
		argv[1] = "cairn_wills_g";
		argv[2] = "1";
		argv[3] = st->log_keys[p];
		argv[4] = g;
		struct rd_wills_tw *tw = bk_xcalloc(1, sizeof(*tw));

		for (size_t i = 0; i < 5; i++)
			lens[i] = strlen(argv[i]);
		for (size_t w = 0; w < j->nwills; w++) {
			/* 7 per will: id, name, topic, ... */
			if (rd_log_partition(j->wills[7 * w + 2], st->partitions) != p)
				continue;
			for (size_t i = 7 * w; i < 7 * w + 7; i++) {
				argv[n] = j->wills[i];
				lens[n++] = j->wlens[i];
			}
			if (j->wtw[w] != NULL) {
				tw->v = bk_xrealloc(tw->v, 2 * (tw->n + 1) * sizeof(*tw->v));
				tw->v[2 * tw->n] = bk_xstrdup(j->wills[7 * w]);
				tw->v[2 * tw->n + 1] = bk_xstrdup(j->wtw[w]);
				tw->n++;
			}
		}
		if (n <= 5 || rd_route_argv(st, argv[3], strlen(argv[3]), rd_wills_cb, tw, (int)n,
					    argv, lens) != REDIS_OK)
			rd_wills_tw_free(tw);
		free(g);
		free(argv);
		free(lens);
	}
	rd_janitor_free(j);
	st->janitor = NULL;
}

static char *rd_str_of(const redisReply *r, size_t *len)
{
	*len = r->type == REDIS_REPLY_STRING ? r->len : 0;
	return r->type == REDIS_REPLY_STRING ? bk_xmemdup(r->str, r->len + 1) : bk_xstrdup("");
}

static void rd_rjanitor_s_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_jcall *jc = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	struct rd_janitor *j;

	if (st == NULL || (j = st->janitor) == NULL) {
		rd_jcall_free(jc);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: janitor on session %s failed: %s",
		       st->where, jc->id, reply->str);
	/* A left will whose record is gone (its node removed it, or a janitor
	 * appended it): its entry in the node's list goes. */
	if (jc->tw != NULL && reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
	    reply->elements == 0)
		rd_rjanitor_tw_done(st, jc->id, jc->tw);
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
	    reply->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(reply->element[0]->str, "park") == 0) {
		j->parked++;
		for (int k = 1; k <= 2; k++) {
			const redisReply *at = reply->element[k];

			if (at->type != REDIS_REPLY_STRING || at->len == 0)
				continue;
			j->zadd = bk_xrealloc(j->zadd, 3 * (j->nzadd + 1) * sizeof(*j->zadd));
			j->zadd[3 * j->nzadd] = rd_global_key(st, k == 1 ? "wills" : "expiry");
			j->zadd[3 * j->nzadd + 1] = bk_xstrdup(at->str);
			j->zadd[3 * j->nzadd + 2] = bk_xstrdup(jc->id);
			j->nzadd++;
		}
	} else if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 10 &&
		   !rd_will_allowed(st, jc->id,
				    reply->element[7]->type == REDIS_REPLY_STRING &&
					    reply->element[7]->str[0] == '1'
					? reply->element[8]->str
					: NULL,
				    reply->element[1]->type == REDIS_REPLY_STRING
					? reply->element[1]->str
					: "")) {
		/* Taken from the session (or a left will's record, which
		 * goes), and not published. */
		if (jc->tw != NULL)
			rd_rjanitor_tw_done(st, jc->id, jc->tw);
	} else if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 10) {
		size_t w = 7 * j->nwills, len;

		j->wills = bk_xrealloc(j->wills, (w + 7) * sizeof(*j->wills));
		j->wlens = bk_xrealloc(j->wlens, (w + 7) * sizeof(*j->wlens));
		j->wtw = bk_xrealloc(j->wtw, (j->nwills + 1) * sizeof(*j->wtw));
		j->wtw[j->nwills] = jc->tw != NULL ? bk_xstrdup(jc->tw) : NULL;
		j->wills[w] = bk_xstrdup(jc->id);
		j->wlens[w] = strlen(jc->id);
		j->wills[w + 1] = rd_str_of(reply->element[9], &len); /* its name */
		j->wlens[w + 1] = len;
		for (int k = 1; k <= 5; k++) {
			j->wills[w + 1 + (size_t)k] = rd_str_of(reply->element[k], &len);
			j->wlens[w + 1 + (size_t)k] = len;
		}
		j->nwills++;
	}
	const redisReply *ep = NULL;

	if (jc->expire && reply != NULL && reply->type == REDIS_REPLY_ARRAY)
		ep = reply->elements == 10  ? reply->element[6]
		     : reply->elements == 2 ? reply->element[1]
					    : NULL;
	if (ep != NULL && ep->type == REDIS_REPLY_STRING) {
		/* The session is gone, and so are its inbound QoS 2 markers (in
		 * the log's slot, another call; a node that dies before it leaves
		 * them until they expire), but for those another node set under
		 * a claim since. */
		j->expired++;
		for (uint32_t p = 0; p < st->partitions; p++) {
			char *mark = rd_cluster_q2_key(st, jc->id, p);
			const char *del[] = {"FCALL", "cairn_q2_forget", "1", mark, ep->str};

			if (rd_route_argv(st, mark, strlen(mark), NULL, NULL, 5, del, NULL) !=
			    REDIS_OK)
				rd_log(st, CAIRN_LOG_ERROR,
				       "redis at %s: cannot drop the QoS 2 markers of %s",
				       st->where, jc->id);
			free(mark);
		}
	}
	rd_jcall_free(jc);
	if (--j->pending == 0)
		rd_rjanitor_end(st);
}

static void rd_rjanitor_session(struct cairn_store *st, const char *id, const char *what,
				const char *inc, const char *pos, const char *now)
{
	struct rd_jcall *jc = bk_xcalloc(1, sizeof(*jc));
	char *own = rd_key(st, "own", id);
	const char *argv[] = {"FCALL", "cairn_janitor_s", "1", own, st->prefix, id, what, inc, pos,
			      now};

	jc->id = bk_xstrdup(id);
	jc->expire = strcmp(what, "expire") == 0;
	jc->tw = strcmp(what, "tw") == 0 ? bk_xstrdup(inc) : NULL;
	if (rd_route_argv(st, own, strlen(own), rd_rjanitor_s_cb, jc, inc != NULL ? 10 : 7, argv,
			  NULL) == REDIS_OK)
		st->janitor->pending++;
	else
		rd_jcall_free(jc);
	free(own);
}

static void rd_rjanitor_g_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	struct rd_janitor *j;
	char *now = privdata;

	if (st == NULL || (j = st->janitor) == NULL) {
		free(now);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: janitor failed: %s", st->where,
		       reply->str);
	j->pending = 1; /* this step's own, until every session's is sent */
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 4 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1) {
		const redisReply *dead = reply->element[1];

		for (size_t i = 0; dead->type == REDIS_REPLY_ARRAY && i < dead->elements; i++) {
			const redisReply *d = dead->element[i];

			if (d->type != REDIS_REPLY_ARRAY || d->elements < 2 ||
			    d->element[0]->type != REDIS_REPLY_STRING)
				continue;
			j->dead = bk_xrealloc(j->dead, (j->ndead + 1) * sizeof(*j->dead));
			j->dead[j->ndead++] = bk_xstrdup(d->element[0]->str);
			for (size_t k = 2; k < d->elements; k++) {
				char *marks = rd_marks_key_of(st, d->element[k]->str);

				rd_rjanitor_session(st, d->element[k]->str, "park",
						    d->element[0]->str, marks, now);
				free(marks);
			}
		}
		for (int w = 2; w <= 3; w++) {
			const redisReply *ids = reply->element[w];

			for (size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements; i++)
				rd_rjanitor_session(st, ids->element[i]->str,
						    w == 2 ? "will" : "expire", NULL, NULL, NULL);
		}
		/* The wills claims left to the departed (defer_will). */
		const redisReply *tw = reply->elements > 4 ? reply->element[4] : NULL;

		for (size_t i = 0;
		     tw != NULL && tw->type == REDIS_REPLY_ARRAY && i + 1 < tw->elements; i += 2)
			if (tw->element[i]->type == REDIS_REPLY_STRING &&
			    tw->element[i + 1]->type == REDIS_REPLY_STRING)
				rd_rjanitor_session(st, tw->element[i + 1]->str, "tw",
						    tw->element[i]->str, "", now);
	}
	free(now);
	if (--j->pending == 0)
		rd_rjanitor_end(st);
}

static void rd_rjanitor_start(struct cairn_store *st, const char *ms)
{
	char *g = bk_strf("%s{L:0}:", st->prefix), *now = bk_xstrdup(ms);
	const char *argv[] = {"FCALL", "cairn_janitor_g", "1", st->log_key, g, st->inc_s, ms};

	st->janitor = bk_xcalloc(1, sizeof(*st->janitor));
	if (rd_route_argv(st, st->log_key, strlen(st->log_key), rd_rjanitor_g_cb, now, 7, argv,
			  NULL) != REDIS_OK) {
		free(now);
		rd_janitor_free(st->janitor);
		st->janitor = NULL;
	}
	free(g);
}

/* Every second: this incarnation is alive for 5 more seconds, and the
 * janitor's round (whichever node holds the janitor key runs it). */
static void rd_beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cairn_store *st = arg;
	char *alive, *nodes, ms[24];

	(void)fd;
	(void)what;
	if (st->ac == NULL || st->ac_broken)
		return;
	alive = rd_node_key(st, st->inc_s, "alive");
	nodes = rd_global_key(st, "nodes");
	rd_i64(ms, rd_wall_ms());
	{
		const char *set[] = {"SET", alive, st->node_id, "PX", "5000"};
		const char *sadd[] = {"SADD", nodes, st->inc_s};
		const char *jan[] = {"FCALL", "cairn_janitor", "0", st->prefix, st->inc_s, ms};

		/* A node the janitor took for dead (a stall) counts again. */
		if (st->rcluster) {
			rd_route_argv(st, alive, strlen(alive), NULL, NULL, 5, set, NULL);
			rd_route_argv(st, nodes, strlen(nodes), NULL, NULL, 3, sadd, NULL);
			if (st->janitor == NULL)
				rd_rjanitor_start(st, ms);
		} else {
			redisAsyncCommandArgv(st->ac, NULL, NULL, 5, set, NULL);
			redisAsyncCommandArgv(st->ac, NULL, NULL, 3, sadd, NULL);
			redisAsyncCommandArgv(st->ac, rd_janitor_cb, NULL, 6, jan, NULL);
		}
	}
	free(alive);
	free(nodes);
}

/* ---- cluster_start ---- */

/* The last entry of each partition of the log, where the reader starts. */
int rd_cluster_read_tail(struct cairn_store *st)
{
	int rc = 0;

	if (st->read_pos == NULL)
		st->read_pos = bk_xcalloc(st->partitions, sizeof(*st->read_pos));
	for (uint32_t p = 0; rc == 0 && p < st->partitions; p++) {
		char *log_key = rd_cluster_part_key(st, "log", p);
		const char *argv[] = {"XREVRANGE", log_key, "+", "-", "COUNT", "1"};
		redisReply *r = rd_sync_cmd(st, 6, argv, &rc);

		free(log_key);
		if (r == NULL)
			break;
		st->read_pos[p] = (struct cairn_log_pos){0, 0};
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
		    r->element[0]->element[0]->type == REDIS_REPLY_STRING)
			rd_pos_parse(r->element[0]->element[0]->str, r->element[0]->element[0]->len,
				     &st->read_pos[p]);
		else if (r->type == REDIS_REPLY_ERROR)
			rc = CAIRN_EIO;
		freeReplyObject(r);
	}
	st->tail_read = rc == 0;
	return rc;
}

/*
 * Every node of a cluster reads and writes the log in the same partitions:
 * the first node to start records its cluster_log_partitions in
 * PREFIX{L:0}:partitions (SET NX), and a node whose number differs from the
 * recorded one is refused, naming both. A store written before the key
 * existed has one partition, as the default says; so the key is set on it
 * at the first start of this version. Changing the number of a live
 * cluster is refused the same way: the log's streams, the sessions'
 * cursors and the nodes' marks are laid out by it.
 */
static int rd_partitions_agree(struct cairn_store *st)
{
	char want[16], *key = bk_strf("%s{L:0}:partitions", st->prefix);
	const char *argv[] = {"SET", key, want, "NX", "GET"};
	uint64_t have = 0;
	int rc = 0;
	redisReply *r;

	snprintf(want, sizeof(want), "%u", (unsigned)st->partitions);
	r = rd_sync_cmd(st, 5, argv, &rc);
	free(key);
	if (r == NULL)
		return rc;
	if (r->type == REDIS_REPLY_ERROR) {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: cannot record cluster_log_partitions: %s",
		       st->where, r->str);
		rc = CAIRN_EIO;
	} else if (r->type == REDIS_REPLY_STRING &&
		   (!rd_parse_u64(r->str, r->len, UINT32_MAX, &have) || have != st->partitions)) {
		rd_log(st, CAIRN_LOG_ERROR,
		       "redis at %s: this node has cluster_log_partitions %u but the cluster's "
		       "log has %.*s partitions (recorded by its first node): every node must "
		       "set the same number, and it cannot be changed on a live cluster",
		       st->where, (unsigned)st->partitions, (int)(r->len < 32 ? r->len : 32),
		       r->str);
		rc = CAIRN_EINVAL;
	}
	freeReplyObject(r);
	return rc;
}

int rd_cluster_start(struct cairn_store *st, const struct cairn_cluster_hooks *h,
		     struct cairn_log_pos *tail, uint64_t *id_base)
{
	char err[256], *inc_key;
	redisReply *r;
	int rc = 0;

	if (!st->cluster)
		return CAIRN_EINVAL;
	if (st->sync == NULL && (rc = rd_sync_connect(st, err, sizeof(err))) != 0) {
		rd_log(st, CAIRN_LOG_ERROR, "%s", err);
		return rc;
	}
	if (st->rcluster) {
		if ((rc = rd_sync_load_everywhere(st, rd_lua)) != 0)
			goto out;
	} else {
		const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", rd_lua};

		r = rd_sync_cmd(st, 4, argv, &rc);
		if (r == NULL)
			goto out;
		if (r->type == REDIS_REPLY_ERROR) {
			rd_log(st, CAIRN_LOG_ERROR,
			       "redis at %s: cannot load cairn's functions (Redis 7 or later is "
			       "needed): %s",
			       st->where, r->str);
			freeReplyObject(r);
			rc = CAIRN_EIO;
			goto out;
		}
		freeReplyObject(r);
	}
	if ((rc = rd_partitions_agree(st)) != 0)
		goto out;
	inc_key = bk_strf("%scluster:incarnation", st->prefix);
	{
		const char *argv[] = {"INCR", inc_key};

		r = rd_sync_cmd(st, 2, argv, &rc);
	}
	free(inc_key);
	if (r == NULL)
		goto out;
	if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0 ||
	    (unsigned long long)r->integer >= (1ull << (63 - RD_ID_SHIFT))) {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: bad incarnation number", st->where);
		freeReplyObject(r);
		rc = CAIRN_EIO;
		goto out;
	}
	st->inc = (uint64_t)r->integer;
	freeReplyObject(r);
	snprintf(st->inc_s, sizeof(st->inc_s), "%llu", (unsigned long long)st->inc);
	if (!st->tail_read && (rc = rd_cluster_read_tail(st)) != 0)
		goto out;
	{
		char *nodes = rd_global_key(st, "nodes");
		char *alive = rd_node_key(st, st->inc_s, "alive");
		const char *sadd[] = {"SADD", nodes, st->inc_s};
		const char *set[] = {"SET", alive, st->node_id, "PX", "5000"};

		r = rd_sync_cmd(st, 3, sadd, &rc);
		if (r != NULL) {
			freeReplyObject(r);
			r = rd_sync_cmd(st, 5, set, &rc);
			if (r != NULL)
				freeReplyObject(r);
		}
		free(nodes);
		free(alive);
		if (r == NULL)
			goto out;
	}
	memcpy(tail, st->read_pos, st->partitions * sizeof(*tail));
	*id_base = st->inc << RD_ID_SHIFT;
	st->log_keys = bk_xcalloc(st->partitions, sizeof(*st->log_keys));
	st->retained_keys = bk_xcalloc(st->partitions, sizeof(*st->retained_keys));
	st->once_keys = bk_xcalloc(st->partitions, sizeof(*st->once_keys));
	st->readers = bk_xcalloc(st->partitions, sizeof(*st->readers));
	st->claim_cur = bk_xcalloc(st->partitions, sizeof(*st->claim_cur));
	for (uint32_t p = 0; p < st->partitions; p++) {
		char *dd = bk_strf("dd:%s", st->inc_s);

		st->log_keys[p] = rd_cluster_part_key(st, "log", p);
		st->retained_keys[p] = rd_cluster_part_key(st, "retained", p);
		st->once_keys[p] = rd_cluster_part_key(st, dd, p);
		free(dd);
	}
	st->log_key = st->log_keys[0];
	st->mark_key = rd_node_key(st, st->inc_s, "pos");
	st->hooks = h;
	for (uint32_t p = 0; p < st->partitions; p++)
		if ((st->readers[p] = rd_aux_new(st, true, p)) == NULL)
			rc = CAIRN_ENOMEM;
	st->control = rd_aux_new(st, false, 0);
	st->beat_ev = event_new(st->base, -1, EV_PERSIST, rd_beat_cb, st);
	if (rc != 0 || st->control == NULL || st->beat_ev == NULL)
		rc = CAIRN_ENOMEM;
	else {
		struct timeval sec = {1, 0};

		event_add(st->beat_ev, &sec);
		rd_log(st, CAIRN_LOG_NOTICE,
		       "redis at %s: node %s joined the cluster as incarnation %s, reading the log "
		       "(%u partitions) after %llu-%llu in the first",
		       st->where, st->node_id, st->inc_s, (unsigned)st->partitions,
		       (unsigned long long)tail->ms, (unsigned long long)tail->seq);
	}
out:
	rd_sync_close(st);
	return rc;
}

/* ---- claim ---- */

struct rd_claim {
	struct cairn_store *st;
	char *id;
	uint64_t serial;
	cairn_claim_fn done;
	void *arg;
	redisReply *reply; /* while done() runs: what visit reads */
};

/* Deliveries point at their message copy, whose id is their seq. */
struct rd_claim_visit {
	const struct cairn_store_visitor *v;
};

static int rd_claim_delivery(void *arg, const struct cairn_delivery_rec *rec)
{
	const struct rd_claim_visit *cv = arg;
	struct cairn_delivery_rec d = *rec;

	d.msg_id = d.seq;
	return cv->v->delivery != NULL ? cv->v->delivery(cv->v->arg, &d) : 0;
}

/* The message copies of HGETALL {c:ID}:m, seq -> value, as messages whose
 * id is the seq. */
static int rd_claim_messages(struct cairn_store *st, const char *id, const redisReply *h,
			     const struct cairn_store_visitor *v)
{
	int rc = 0;

	if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
		return CAIRN_ECORRUPT;
	for (size_t i = 0; rc == 0 && i < h->elements; i += 2) {
		const redisReply *f = h->element[i], *val = h->element[i + 1];
		struct cairn_msg_rec rec = {0};

		if (!rd_parse_u64(f->str, f->len, UINT64_MAX, &rec.msg_id) ||
		    !rd_msg_copy_parse(val->str, val->len, &rec)) {
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s: session %s: bad message copy %s",
			       st->where, id, f->str);
			return CAIRN_ECORRUPT;
		}
		if (v->message != NULL)
			rc = v->message(v->arg, &rec);
		free((char *)rec.topic);
	}
	return rc;
}

/* The claimed session's records, from the claim's reply (r->visit). */
static int rd_claim_visit(void *ctx, const struct cairn_store_visitor *v)
{
	struct rd_claim *c = ctx;
	struct cairn_store *st = c->st;
	redisReply *reply = c->reply, *one[1];
	struct rd_claim_visit cv = {v};
	struct cairn_store_visitor dv = *v;
	int rc = 0;

	dv.arg = &cv;
	dv.delivery = rd_claim_delivery;
	one[0] = reply->element[2];
	if (one[0]->elements > 0)
		rc = rd_visit_session(st, c->id, one, v);
	one[0] = reply->element[3];
	if (rc == 0)
		rc = rd_visit_subs(st, c->id, one, v);
	if (rc == 0)
		rc = rd_claim_messages(st, c->id, reply->element[5], v);
	one[0] = reply->element[4];
	if (rc == 0 && v->delivery != NULL)
		rc = rd_visit_deliveries(st, c->id, one, &dv);
	one[0] = reply->element[6];
	if (rc == 0)
		rc = rd_visit_inflight(st, c->id, one, v);
	return rc;
}

/*
 * After the done() of a claim that took a will: the will goes from the
 * session with this node's next commit, which carries its append if the
 * core published it (the ACL may have dropped it), while this node holds
 * the session. Until then it stays in the store, taken: if this node dies
 * first, the janitor publishes it, or the next claim takes it again.
 */
static void rd_claim_will_done(struct cairn_store *st, const char *id)
{
	const char *name = st->will_name, *owner = st->stage_owner;

	st->will_id = NULL;
	st->will_name = NULL;
	if (name == NULL || !rd_cluster_owns(st, id))
		return;
	char *s = rd_key(st, "session", id);
	const char *argv[] = {"CAIRN.WILLDONE", s, name};

	st->stage_owner = id;
	if (rd_stage(st, 3, argv, NULL) != 0)
		rd_log(st, CAIRN_LOG_ERROR,
		       "redis at %s: session %s: cannot stage the removal of its claimed will",
		       st->where, id);
	st->stage_owner = owner;
	free(s);
}

/* The claim's reply (claim's 10 elements, 11 from claim_s) is in: done().
 * pos: the previous node's mark from claim_g, or NULL. */
/*
 * A claim here of a session whose connection this node held under another
 * serial, which a claim elsewhere took meanwhile leaving this node its
 * will (left: the record's will_ep, the epoch of this node's hold), the
 * kick not read yet (the client came back here at once): the kick is
 * acted on now, before the claim's done() drops the session held, so the
 * will goes out if that connection still holds it (else it would be lost:
 * the late kick finds the session held under the new serial).
 */
static void rd_claim_left_here(struct cairn_store *st, const struct rd_claim *c,
			       const redisReply *left)
{
	struct rd_owner **pp = rd_owner_find(st->owners, c->id);
	uint64_t ep = 0;

	if (pp == NULL || *pp == NULL || (*pp)->serial == c->serial || (*pp)->epoch == 0 ||
	    left->type != REDIS_REPLY_STRING ||
	    !rd_parse_u64(left->str, left->len, UINT64_MAX, &ep) || ep != (*pp)->epoch)
		return;
	rd_kick(st, c->id, (*pp)->serial, true, ep);
}

static void rd_claim_finish(struct rd_claim *c, struct cairn_store *st, redisReply *reply, int rc,
			    const redisReply *pos)
{
	struct cairn_claim_result res = {0};

	if (rc == 0 && (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 7)) {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: claim of %s failed: %s", st->where, c->id,
		       reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str
									 : "unexpected reply");
		rc = CAIRN_EIO;
	}
	if (rc == 0) {
		const redisReply *old = reply->element[0], *cur = reply->element[1];
		const char *colon = old->len > 0 ? memchr(old->str, ':', old->len) : NULL;

		if (colon != NULL && (size_t)(colon - old->str) == strlen(st->inc_s) &&
		    memcmp(old->str, st->inc_s, (size_t)(colon - old->str)) == 0 &&
		    rd_parse_u64(colon + 1, old->len - (size_t)(colon + 1 - old->str), UINT64_MAX,
				 &res.prev_serial))
			res.prev_local = true;
		res.cursors = st->claim_cur;
		if (cur->type == REDIS_REPLY_STRING && cur->len > 0)
			res.has_cursor = rd_posv_parse(st, cur->str, cur->len, st->claim_cur);
		/* A takeover on this node keeps the hold (and the writes staged
		 * under it); a claim from elsewhere starts a new one. */
		const redisReply *ep = reply->elements >= 9 ? reply->element[8] : NULL;
		uint64_t epoch = ep != NULL && ep->type == REDIS_REPLY_INTEGER && ep->integer > 0
				     ? (uint64_t)ep->integer
				     : 0;

		if (reply->elements >= 10)
			rd_claim_left_here(st, c, reply->element[reply->elements - 1]);
		rd_owner_set(st->owners, c->id, c->serial, epoch, !res.prev_local);
		if (!res.has_cursor && pos != NULL && pos->type == REDIS_REPLY_STRING &&
		    pos->len > 0 && rd_posv_parse(st, pos->str, pos->len, st->claim_cur)) {
			/* The previous node's mark is the session's cursor from now
			 * on: kept in its claim's hash with the next commit. */
			char *own = rd_key(st, "own", c->id);
			const char *argv[] = {"HSET", own, "cur", pos->str};

			res.has_cursor = true;
			st->stage_owner = c->id;
			rd_stage(st, 4, argv, NULL);
			st->stage_owner = NULL;
			free(own);
		}
		res.cursor = st->claim_cur[0];
		c->reply = reply;
		res.visit = rd_claim_visit;
		res.visit_ctx = c;
		/* The will the claim took (take_will), and its name. */
		const redisReply *w = reply->elements >= 8 ? reply->element[7] : NULL;

		if (w != NULL && w->type == REDIS_REPLY_ARRAY && w->elements == 8) {
			bool ok = true;
			uint64_t q = 0, rt = 0;

			for (size_t i = 0; i < 8; i++)
				ok = ok && w->element[i]->type == REDIS_REPLY_STRING;
			ok = ok && rd_parse_u64(w->element[2]->str, w->element[2]->len, 2, &q) &&
			     rd_parse_u64(w->element[3]->str, w->element[3]->len, 1, &rt);
			if (ok) {
				res.has_will = true;
				res.will.topic = w->element[0]->str;
				res.will.payload = (const uint8_t *)w->element[1]->str;
				res.will.payload_len = (uint32_t)w->element[1]->len;
				res.will.qos = (uint8_t)q;
				res.will.retain = rt == 1;
				res.will.props = w->element[4]->len > 0
						     ? (const uint8_t *)w->element[4]->str
						     : NULL;
				res.will.props_len = (uint32_t)w->element[4]->len;
				res.will_username =
				    w->element[5]->str[0] == '1' ? w->element[6]->str : NULL;
				st->will_id = c->id;
				st->will_name = w->element[7]->str;
			} else {
				rd_log(st, CAIRN_LOG_ERROR, "redis at %s: claim of %s: bad will",
				       st->where, c->id);
			}
		}
	}
	c->done(c->arg, rc, rc == 0 ? &res : NULL);
	if (res.has_will)
		rd_claim_will_done(st, c->id);
	free(c->id);
	free(c);
}

static void rd_claim_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_claim *c = privdata;
	struct cairn_store *st = ac->data;

	if (st == NULL) {
		/* The store is closing: nobody waits any more. */
		free(c->id);
		free(c);
		return;
	}
	rd_claim_finish(c, st, r, r == NULL ? CAIRN_EUNAVAILABLE : 0, NULL);
}

/* On a Redis Cluster, claim_g's reply: the previous node's mark. */
static void rd_claim_g_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_claim *c = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r, *s = c->reply;

	c->reply = NULL;
	if (st == NULL) {
		freeReplyObject(s);
		free(c->id);
		free(c);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: claim of %s (the log's slot) failed: %s",
		       st->where, c->id, reply->str);
	int rc = reply == NULL                      ? CAIRN_EUNAVAILABLE
		 : reply->type == REDIS_REPLY_ERROR ? CAIRN_EIO
						    : 0;

	rd_claim_finish(c, st, s, rc, reply);
	freeReplyObject(s);
}

/* On a Redis Cluster, claim_s's reply: the session is taken; claim_g
 * records it in the log's slot and says where the previous node was. */
static void rd_claim_s_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_claim *c = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	const redisReply *old;
	char inc[24] = "", *g;
	const char *colon;
	const char *argv[16];
	int argc = 0;

	if (st == NULL) {
		free(c->id);
		free(c);
		return;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 11) {
		rd_claim_finish(c, st, reply, reply == NULL ? CAIRN_EUNAVAILABLE : 0, NULL);
		return;
	}
	old = reply->element[0];
	colon = old->type == REDIS_REPLY_STRING ? memchr(old->str, ':', old->len) : NULL;
	/* The previous node's incarnation, when the claim left it the will
	 * (defer_will): claim_g lists it in that node's set of left wills. */
	bool left = reply->element[9]->type == REDIS_REPLY_STRING &&
		    strcmp(reply->element[9]->str, "1") == 0;

	if (left && colon != NULL && (size_t)(colon - old->str) < sizeof(inc)) {
		memcpy(inc, old->str, (size_t)(colon - old->str));
		inc[colon - old->str] = '\0';
		if (strcmp(inc, st->inc_s) == 0)
			inc[0] = '\0';
	}
	g = bk_strf("%s{L:0}:", st->prefix);
	argv[argc++] = "FCALL";
	argv[argc++] = "cairn_claim_g";
	argv[argc++] = "1";
	argv[argc++] = st->log_key;
	argv[argc++] = g;
	argv[argc++] = c->id;
	argv[argc++] = st->inc_s;
	argv[argc++] = inc;
	argv[argc++] = old->type == REDIS_REPLY_STRING ? old->str : "";
	c->reply = rd_reply_dup(reply);
	if (rd_route_argv(st, st->log_key, strlen(st->log_key), rd_claim_g_cb, c, argc, argv,
			  NULL) != REDIS_OK) {
		redisReply *s = c->reply;

		c->reply = NULL;
		rd_claim_finish(c, st, s, CAIRN_EUNAVAILABLE, NULL);
		freeReplyObject(s);
	}
	free(g);
}

int rd_cluster_claim(struct cairn_store *st, const char *client_id, uint64_t serial,
		     cairn_claim_fn done, void *arg)
{
	struct rd_claim *c;
	char tok[48];
	/* A clean start: the claim takes a delayed will too (take_will). */
	const char *clean = (serial & CAIRN_CLAIM_CLEAN) != 0 ? "1" : "0";
	const char *argv[] = {"FCALL", "cairn_claim", "0", st->prefix, client_id, tok, clean};

	if (st->ac == NULL || st->ac_broken ||
	    (st->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0)
		return CAIRN_EUNAVAILABLE;
	serial &= ~CAIRN_CLAIM_CLEAN;
	snprintf(tok, sizeof(tok), "%s:%llu", st->inc_s, (unsigned long long)serial);
	c = bk_xcalloc(1, sizeof(*c));
	c->st = st;
	c->id = bk_xstrdup(client_id);
	c->serial = serial;
	c->done = done;
	c->arg = arg;
	if (st->rcluster) {
		char *own = rd_key(st, "own", client_id), *marks = rd_marks_key_of(st, client_id);
		const char *sv[] = {"FCALL", "cairn_claim_s", "1",  own, st->prefix, client_id,
				    tok,     marks,           clean};
		int ok = rd_route_argv(st, own, strlen(own), rd_claim_s_cb, c, 9, sv, NULL);

		free(own);
		free(marks);
		if (ok == REDIS_OK)
			return CAIRN_EINPROGRESS;
		free(c->id);
		free(c);
		return CAIRN_EUNAVAILABLE;
	}
	if (redisAsyncCommandArgv(st->ac, rd_claim_cb, c, 7, argv, NULL) != REDIS_OK) {
		free(c->id);
		free(c);
		return CAIRN_EUNAVAILABLE;
	}
	return CAIRN_EINPROGRESS;
}

void rd_cluster_release(struct cairn_store *st, const char *client_id)
{
	rd_owner_drop(st->owners, client_id);
}

int rd_cluster_park(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	char *own = rd_key(st, "own", rec->client_id);
	char *owned = rd_node_key(st, st->inc_s, "owned");
	char *wills = rd_global_key(st, "wills");
	char *expiry = rd_global_key(st, "expiry");
	char at[24];
	const char *tok[] = {"HSET", own, "tok", ""};
	const char *srem[] = {"SREM", owned, rec->client_id};
	const char *zadd[] = {"ZADD", NULL, at, rec->client_id};
	int rc = rd_stage(st, 4, tok, NULL);

	if (rc == 0)
		rc = rd_stage(st, 3, srem, NULL);
	if (rc == 0 && rec->expires_at > 0) {
		rd_i64(at, rec->expires_at);
		zadd[1] = expiry;
		rc = rd_stage(st, 4, zadd, NULL);
	}
	if (rc == 0 && rec->has_will && rec->will_at > 0) {
		rd_i64(at, rec->will_at);
		zadd[1] = wills;
		rc = rd_stage(st, 4, zadd, NULL);
	}
	free(own);
	free(owned);
	free(wills);
	free(expiry);
	return rc;
}

/* ---- appends, the routed mark, reads ---- */

/* An inbound QoS 2 marker goes with its message's append: in the slot of
 * the message's log partition. */
char *rd_cluster_q2_key(const struct cairn_store *st, const char *client_id, uint32_t part)
{
	return bk_strf("%s{L:%u}:q2:%s", st->prefix, (unsigned)part, client_id);
}

/* Remember (or, part UINT32_MAX, find and forget) the partition of the
 * marker this hold of client_id set for packet id pid; UINT32_MAX when it
 * is not known here. */
static uint32_t rd_q2_part(struct cairn_store *st, const char *client_id, uint16_t pid,
			   uint32_t part)
{
	struct rd_owner **pp = rd_owner_find(st->owners, client_id), *e;

	if (pp == NULL || (e = *pp) == NULL)
		return UINT32_MAX;
	for (size_t i = 0; i < e->nq2; i++)
		if (e->q2[i].pid == pid) {
			uint32_t was = e->q2[i].part;

			if (part != UINT32_MAX)
				e->q2[i].part = (uint16_t)part;
			else
				e->q2[i] = e->q2[--e->nq2];
			return was;
		}
	if (part == UINT32_MAX)
		return UINT32_MAX;
	if (e->nq2 == e->q2cap) {
		e->q2cap = e->q2cap ? e->q2cap * 2 : 4;
		e->q2 = bk_xrealloc(e->q2, e->q2cap * sizeof(*e->q2));
	}
	e->q2[e->nq2++] = (struct rd_q2part){pid, (uint16_t)part};
	return part;
}

/*
 * PUBREL: the marker goes, in the log's slot, which the session's fenced
 * call does not reach: the marker holds the claim epoch it was set under,
 * and it goes only if that is this node's epoch or older, so a node that
 * lost the session (its kick not yet read) cannot delete a marker the new
 * holder set since for a new message under the same id (whose resend
 * would be appended twice). Not held here: the session's writes are
 * dropped, and so is this. The marker's partition is known when this hold
 * set it; else (set before a takeover) it may be in any.
 */
int rd_cluster_q2_done(struct cairn_store *st, const char *client_id, const char *pid)
{
	struct rd_owner **pp = rd_owner_find(st->owners, client_id);
	uint64_t id = 0;
	char epoch[24];
	int rc = 0;

	if (pp == NULL || *pp == NULL || !rd_parse_u64(pid, strlen(pid), 65535, &id))
		return 0;
	snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)(*pp)->epoch);
	uint32_t known = rd_q2_part(st, client_id, (uint16_t)id, UINT32_MAX);

	for (uint32_t p = 0; rc == 0 && p < st->partitions; p++) {
		if (known != UINT32_MAX && p != known)
			continue;
		char *mark = rd_cluster_q2_key(st, client_id, p);
		const char *del[] = {"CAIRN.UNMARK", mark, pid, epoch};

		rc = rd_stage(st, 4, del, NULL);
		free(mark);
	}
	return rc;
}

int rd_cluster_q2_forget(struct cairn_store *st, const char *client_id)
{
	struct rd_owner **pp = rd_owner_find(st->owners, client_id);
	char *key, epoch[24];
	const char *owner = st->stage_owner;
	int rc;

	/* The markers set under this node's claim and before it; one another
	 * node sets under a later claim stays (the log's part of the commit
	 * is not fenced). Not held here: nothing of it is written. */
	if (pp == NULL || *pp == NULL || (*pp)->epoch == 0)
		return 0;
	snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)(*pp)->epoch);
	st->stage_owner = NULL; /* the log's slots */
	rc = 0;
	for (uint32_t p = 0; rc == 0 && p < st->partitions; p++) {
		key = rd_cluster_q2_key(st, client_id, p);
		const char *forget[] = {"CAIRN.FORGET", key, epoch};

		rc = rd_stage(st, 3, forget, NULL);
		free(key);
	}
	st->stage_owner = owner;
	return rc;
}

int rd_cluster_log_append(struct cairn_store *st, const char *publisher,
			  const struct cairn_msg_rec *rec)
{
	uint32_t part = rd_log_partition(rec->topic, st->partitions);
	const char *log = st->log_keys[part], *ret = st->retained_keys[part],
		   *once = st->once_keys[part];
	char q[4], r[4], x[24], minid[24], n[4], seq[24];
	int rc;

	int64_t min = rd_wall_ms() - st->retention_ms;
	rd_i64(minid, min > 0 ? min : 0);
	snprintf(q, sizeof(q), "%u", (unsigned)rec->qos);
	snprintf(r, sizeof(r), "%d", rec->retain ? 1 : 0);
	rd_i64(x, rec->expires_at);
	/* On a Redis Cluster, an inbound QoS 2 message whose id was just
	 * staged is appended once per publisher and packet id. */
	char *mark = NULL, field[8] = "";

	if (st->rcluster && rec->qos == 2 && st->last_in_id != NULL &&
	    strcmp(st->last_in_id, publisher) == 0) {
		mark = rd_cluster_q2_key(st, publisher, part);
		snprintf(field, sizeof(field), "%u", (unsigned)st->last_in_pid);
		rd_q2_part(st, publisher, st->last_in_pid, part);
	}
	free(st->last_in_id);
	st->last_in_id = NULL;
	/* On a Redis Cluster, the will a claim took (rd_claim_finish) is
	 * appended once per will (name), whichever node's commit lands first:
	 * the claims of a will a node died before removing, the janitor's.
	 * The will this node publishes for a connection it holds
	 * (rec->will_serial, the claim it holds it under) is named by that
	 * claim's epoch, as a claim by another node names the will it takes
	 * from that connection (take_will): this append and that node's,
	 * racing, go out once. */
	char *wmark = NULL;

	/* The will a kick left here (defer_will), published by the core
	 * during the hook: named by the connection's claim epoch, as the
	 * janitor names it should this node die first. */
	bool unfenced = false;

	if (mark == NULL && st->kick_will_id != NULL && rec->will_serial != 0 &&
	    strcmp(st->kick_will_id, publisher) == 0 && st->kick_will_ep > 0) {
		wmark = bk_strf("%s{L:%u}:w:%s:e%llu", st->prefix, (unsigned)part, publisher,
				(unsigned long long)st->kick_will_ep);
		st->kick_will_used = true;
		unfenced = true;
	} else if (st->rcluster && mark == NULL && st->will_id != NULL &&
		   strcmp(st->will_id, publisher) == 0) {
		wmark = bk_strf("%s{L:%u}:w:%s:e%s", st->prefix, (unsigned)part, publisher,
				st->will_name);
		st->will_id = NULL; /* one append is the will */
	} else if (mark == NULL && rec->will_serial != 0 && publisher[0] != '\0') {
		struct rd_owner **pp = rd_owner_find(st->owners, publisher);
		const struct rd_owner *o = pp != NULL ? *pp : NULL;
		uint64_t ep = o == NULL                            ? 0
			      : o->serial == rec->will_serial      ? o->epoch
			      : o->prev_serial == rec->will_serial ? o->prev_epoch
								   : 0;

		/* On one server too: a claim elsewhere may leave this
		 * node the same will (defer_will), and the janitor append it
		 * should this node die; the marker, not the fence, keeps it
		 * to one. */
		if (ep > 0) {
			wmark = bk_strf("%s{L:%u}:w:%s:e%llu", st->prefix, (unsigned)part,
					publisher, (unsigned long long)ep);
			unfenced = true;
		}
	}
	snprintf(n, sizeof(n), "%d",
		 (rec->retain ? 2 : 1) + (mark != NULL ? 1 : 0) + (wmark != NULL ? 1 : 0));
	/* The publisher's session writes it: a publisher another node has
	 * claimed since appends nothing more here (its client resends there). */
	st->stage_owner =
	    !unfenced && publisher[0] != '\0' && rd_cluster_owns(st, publisher) ? publisher : NULL;
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)++st->appends);
	{
		const char *argv[] = {"CAIRN.ONCE", once, seq, n};

		rc = rd_stage(st, 4, argv, NULL);
	}
	if (rc == 0 && mark != NULL) {
		struct rd_owner **pp = rd_owner_find(st->owners, publisher);
		char epoch[24];

		snprintf(epoch, sizeof(epoch), "%llu",
			 pp != NULL && *pp != NULL ? (unsigned long long)(*pp)->epoch : 0ULL);
		const char *argv[] = {"CAIRN.MARK", mark, field, rec->retain ? "2" : "1", epoch};

		rc = rd_stage(st, 5, argv, NULL);
	}
	free(mark);
	if (rc == 0 && wmark != NULL) {
		const char *argv[] = {"CAIRN.NX", wmark, rec->retain ? "2" : "1"};

		rc = rd_stage(st, 3, argv, NULL);
	}
	free(wmark);
	if (rc == 0) {
		const char *argv[] = {"XADD",  log,
				      "MINID", "~",
				      minid,   "*",
				      "t",     rec->topic,
				      "p",     (const char *)rec->payload,
				      "q",     q,
				      "r",     r,
				      "x",     x,
				      "o",     (const char *)rec->props,
				      "f",     publisher};
		size_t lens[20];

		for (int i = 0; i < 20; i++)
			lens[i] = i == 9            ? rec->payload_len
				  : i == 17         ? rec->props_len
				  : argv[i] != NULL ? strlen(argv[i])
						    : 0;
		if (argv[17] == NULL)
			argv[17] = "";
		rc = rd_stage(st, 20, argv, lens);
	}
	if (rc == 0 && rec->retain) {
		if (rec->payload_len == 0) {
			const char *argv[] = {"HDEL", ret, rec->topic};

			rc = rd_stage(st, 3, argv, NULL);
		} else {
			size_t vlen;
			char *val = rd_msg_value(rec, &vlen);
			const char *argv[] = {"HSET", ret, rec->topic, val};
			size_t lens[] = {4, strlen(ret), strlen(rec->topic), vlen};

			rc = rd_stage(st, 4, argv, lens);
			free(val);
		}
	}
	st->stage_owner = NULL;

	return rc;
}

int rd_cluster_log_routed_p(struct cairn_store *st, const char *client_id,
			    const struct cairn_log_pos *pos)
{
	char *key, *val;
	int rc;

	if (pos == NULL && client_id == NULL)
		return CAIRN_EINVAL;
	val = pos != NULL ? rd_posv_format(st, pos) : NULL;
	if (client_id != NULL) {
		/* The session's own cursor, in its claim's hash. */
		const char *set[] = {"HSET", NULL, "cur", val};
		const char *del[] = {"HDEL", NULL, "cur"};

		key = rd_key(st, "own", client_id);
		set[1] = del[1] = key;
		st->stage_owner = client_id;
		rc = val == NULL ? rd_stage(st, 3, del, NULL) : rd_stage(st, 4, set, NULL);
		st->stage_owner = NULL;
		free(key);
		free(val);
		return rc;
	}
	const char *argv[] = {"SET", st->mark_key, val};

	if (st->routed_at > 0 && st->routed_at == st->staged.n) {
		/* The last command is the previous mark: this one replaces it. */
		st->staged.n--;
		redisFreeCommand(st->staged.v[st->staged.n].buf);
		free(st->staged.v[st->staged.n].owner);
	}
	rc = rd_stage(st, 3, argv, NULL);
	if (rc == 0)
		st->routed_at = st->staged.n;
	free(val);
	return rc;
}

struct rd_read {
	struct cairn_store *st;
	cairn_log_read_fn done;
	void *arg;
	uint32_t part;
};

static void rd_log_read_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_read *rr = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	if (st == NULL) {
		free(rr);
		return;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		if (reply != NULL)
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s: reading the log failed: %s",
			       st->where,
			       reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		rr->done(rr->arg, reply == NULL ? CAIRN_EUNAVAILABLE : CAIRN_EIO, NULL, 0);
	} else {
		size_t n;
		struct cairn_log_pos last = {0, 0};
		struct cairn_log_entry *e = rd_entries_parse(st, reply, rr->part, &n, &last);

		rr->done(rr->arg, 0, e, n);
		free(e);
	}
	free(rr);
}

int rd_cluster_log_read_p(struct cairn_store *st, uint32_t part, struct cairn_log_pos after,
			  size_t max, cairn_log_read_fn done, void *arg)
{
	const char *key = part < st->partitions ? st->log_keys[part] : NULL;
	char from[49], count[24];
	const char *argv[] = {"XRANGE", key, from, "+", "COUNT", count};
	struct rd_read *rr;
	int rc = CAIRN_EINPROGRESS;

	if (key == NULL)
		return CAIRN_EINVAL;
	if (st->ac == NULL || st->ac_broken ||
	    (st->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0)
		return CAIRN_EUNAVAILABLE;
	from[0] = '(';
	rd_pos_format(from + 1, after);
	snprintf(count, sizeof(count), "%zu", max);
	rr = bk_xcalloc(1, sizeof(*rr));
	rr->st = st;
	rr->done = done;
	rr->arg = arg;
	rr->part = part;
	if ((st->rcluster
		 ? rd_route_argv(st, key, strlen(key), rd_log_read_cb, rr, 6, argv, NULL)
		 : redisAsyncCommandArgv(st->ac, rd_log_read_cb, rr, 6, argv, NULL)) != REDIS_OK) {
		free(rr);
		rc = CAIRN_EUNAVAILABLE;
	}
	return rc;
}
