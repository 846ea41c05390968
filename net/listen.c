/*
 * listen: see listen.h.  getaddrinfo() with AI_PASSIVE; the first address
 * that binds wins.  SO_REUSEADDR lets a restarted node rebind at once while
 * old connections sit in TIME_WAIT; it does not let two nodes share a port.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"

int
listen_split(const char *addr, char *host, size_t hostsz, char *port,
    size_t portsz)
{
	const char *colon, *h = addr;
	size_t hlen;

	if ((colon = strrchr(addr, ':')) == NULL)
		return -EINVAL;
	hlen = (size_t)(colon - addr);
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= hostsz || strlen(colon + 1) == 0 ||
	    strlen(colon + 1) >= portsz)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	snprintf(port, portsz, "%s", colon + 1);
	return 0;
}

int
listen_open(const char *addr, struct err *e)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	char host[256], port[16];
	int fd = -1, rc, one = 1, saved = 0;

	if (listen_split(addr, host, sizeof(host), port, sizeof(port)) < 0)
		return err_set(e, -EINVAL, "listen %s: expected HOST:PORT", addr);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		return err_set(e, -EADDRNOTAVAIL, "listen %s: %s", addr,
		    gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 128) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return err_set(e, -saved, "listen %s: %s", addr,
		    strerror(saved));
	return fd;
}
